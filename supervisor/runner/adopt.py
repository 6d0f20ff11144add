"""After a restart: find the processes of jobs recorded as running, by pid and start time."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import psutil

from supervisor.models import JobRecord
from supervisor.runner.files import ENV_MARKER, RunFiles

# A job process is started either as `python -m supervisor.job_main` or forked by the fork
# server. The older module names (worker, zygote) are kept so that a daemon upgraded while
# jobs run still adopts them.
JOB_PROCESS_MODULES = {"supervisor.job_main", "supervisor.runner.forkserver_main",
                       "supervisor.worker", "supervisor.runner.zygote"}


@dataclass(frozen=True)
class Leader:
    pid: int
    started: float
    pidfd: int  # held from before the identity check, so the pid cannot be recycled under us


def _open_if_same(pid: int, started: float | None, job_id: str) -> Leader | None:
    """A pidfd for `pid` if it is still this job's process: same start time and the job's env marker.

    The start time alone could be matched by a forged or stale record; the marker is set by
    the daemon at spawn and cannot be acquired by an unrelated process afterwards.
    """
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        proc = psutil.Process(pid)
        same = started is not None and abs(proc.create_time() - started) < 0.005
        if same and proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(ENV_MARKER) == job_id:
            return Leader(pid, proc.create_time(), fd)
    except psutil.Error:
        pass
    os.close(fd)
    return None


def _scan_for_job_processes(job_ids: set[str]) -> dict[str, Leader]:
    """Workers whose pid was never recorded (daemon died right after spawning), found by marker.

    One pass over all processes for every unresolved job: a restart after a crash may have
    hundreds of them, and a pass per job made recovery take seconds.
    """
    found: dict[str, Leader] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if not JOB_PROCESS_MODULES & set(proc.info["cmdline"] or []):
                continue
            job_id = proc.environ().get(ENV_MARKER)
            if job_id in job_ids and job_id not in found:
                leader = _open_if_same(proc.pid, proc.create_time(), job_id)
                if leader is not None:
                    found[job_id] = leader
    return found


def find_leaders(recs: list[JobRecord]) -> dict[str, Leader]:
    """The live process of each job recorded as running: by recorded pid + start time, else by marker."""
    found: dict[str, Leader] = {}
    for rec in recs:
        leader = _open_if_same(rec.pid, rec.pid_started, rec.id) if rec.pid is not None else None
        if leader is not None:
            found[rec.id] = leader
    unresolved = {rec.id for rec in recs} - set(found)
    if unresolved:
        found.update(_scan_for_job_processes(unresolved))
    return found


def ever_ran(files: RunFiles) -> bool:
    """Job code runs only after `started` exists; without it the job can safely run again."""
    return files.started.exists() or files.result.exists()
