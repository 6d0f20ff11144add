"""After a restart: find the processes of jobs recorded as running, by pid and start time."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import psutil

from supervisor.models import JobRecord
from supervisor.runner.files import ENV_MARKER, RunFiles


@dataclass(frozen=True)
class Leader:
    pid: int
    started: float
    pidfd: int  # held from before the identity check, so the pid cannot be recycled under us


def _open_if_same(pid: int, started: float | None) -> Leader | None:
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        proc = psutil.Process(pid)
        same = started is not None and abs(proc.create_time() - started) < 0.005
        if same and proc.status() != psutil.STATUS_ZOMBIE:
            return Leader(pid, proc.create_time(), fd)
    except psutil.Error:
        pass
    os.close(fd)
    return None


def _scan_for_worker(job_id: str) -> Leader | None:
    """The pid was never recorded (daemon died right after spawning): find the worker by marker."""
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "supervisor.worker" in (proc.info["cmdline"] or []) and proc.environ().get(ENV_MARKER) == job_id:
                return _open_if_same(proc.pid, proc.create_time())
    return None


def find_leader(rec: JobRecord) -> Leader | None:
    if rec.pid is not None:
        return _open_if_same(rec.pid, rec.pid_started)
    return _scan_for_worker(rec.id)


def ever_ran(files: RunFiles) -> bool:
    """Job code runs only after `started` exists; without it the job can safely run again."""
    return files.started.exists() or files.result.exists()
