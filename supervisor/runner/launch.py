"""Start a job as its own process: new session, output to its log file, a private tmp dir."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil
from loguru import logger

from supervisor.logs import job_log_path, user_log_path
from supervisor.models import JobRecord
from supervisor.registry import JobType
from supervisor.runner.cgroups import JobCgroups
from supervisor.runner.files import ENV_MARKER, RunFiles
from supervisor.runner.spec import JobSpec
from supervisor.runner.forkserver import ForkServer, ForkServerError, TooBig
from supervisor.runner.identity import RunAs

# Daemon-only variables that must not leak into jobs (a job must not notify systemd).
_PRIVATE_ENV = ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass(frozen=True)
class Launched:
    pid: int
    started: float  # the process's create_time: with the pid, its identity
    forked: bool = False  # a child of the fork server, not of the daemon: watch it by pidfd
    cgroup: Path | None = None


@dataclass(frozen=True)
class LaunchPaths:
    state_dir: Path
    log_dir: Path
    events_socket: Path | None
    cgroups: JobCgroups | None
    run_as: RunAs | None = None  # set when the daemon is root: the job drops to this user
    shim: Path | None = None  # the native command-job shim (runner/shim.py), when built and enabled
    max_log_bytes: int | None = None  # the job's output cap (JobOptions.applied)


def job_spec(rec: JobRecord, jt: JobType, files: RunFiles, paths: LaunchPaths, cgroup: Path | None) -> JobSpec:
    return JobSpec(**{
        "id": rec.id,
        "job": rec.job,
        "kind": jt.kind,
        "module": str(jt.module_path),
        "module_sha256": jt.module_sha256,
        "params": rec.params,
        "attempt": rec.attempt,
        "requestor": rec.requestor,
        "log_user": rec.log_user,
        "tmpdir": str(files.tmp),
        "user_log": str(user_log_path(paths.log_dir, rec.log_user)),
        "events_socket": str(paths.events_socket) if paths.events_socket else None,
        "cgroup": str(cgroup) if cgroup else None,  # to join: set for posix_spawned jobs only
        "run_as": jt.options.run_as,
        "shim": str(paths.shim) if paths.shim and jt.kind == "command" else None,
        "max_log_bytes": paths.max_log_bytes,
        **(paths.run_as.spec_fields() if paths.run_as else {}),
    })


def job_environment(rec: JobRecord, kind: str, files: RunFiles, run_as: RunAs | None = None) -> dict[str, str]:
    """TMPDIR: a command's tmp dir (its working dir too); a Python job's run dir, which exists
    from the start, is as private and is removed as well, while ctx.tmpdir is made on first use."""
    tmpdir = files.workdir(kind)
    if run_as is not None:  # another user's job: a clean, login-like environment
        env = run_as.environment(tmpdir)
    else:
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
    env[ENV_MARKER] = rec.id  # inherited by every descendant: how strays are found
    env["TMPDIR"] = str(tmpdir)
    return env


def launch(rec: JobRecord, jt: JobType, paths: LaunchPaths, forkserver: ForkServer | None = None) -> Launched:
    """Start the job; the fork server puts it in a cgroup itself, posix_spawn'ed jobs join one."""
    files = RunFiles.of(paths.state_dir, rec.id)
    log = job_log_path(paths.log_dir, rec.id)
    env = job_environment(rec, jt.kind, files, paths.run_as)
    if forkserver is not None and forkserver.ready():
        files.prepare(None)
        try:
            pid, cgroup = forkserver.fork_job(files.dir, log, env, job_spec(rec, jt, files, paths, None))
            return Launched(pid, process_start_time(pid) or 0.0, forked=True, cgroup=cgroup)
        except TooBig as exc:
            logger.debug("{}: starting job {} with posix_spawn", exc, rec.id)
        except ForkServerError as exc:
            logger.warning("fork server failed ({}); starting job {} with posix_spawn", exc, rec.id)
    cgroup = paths.cgroups.create(rec.id) if paths.cgroups else None
    files.prepare(job_spec(rec, jt, files, paths, cgroup))
    try:
        return _spawn(files, log, env, cgroup)
    except OSError:
        if cgroup is not None:
            paths.cgroups.remove(cgroup)
        raise


def _spawn(files: RunFiles, log: Path, env: dict[str, str], cgroup: Path | None) -> Launched:
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    argv = [sys.executable, "-m", "supervisor.job_main", str(files.dir)]
    try:
        # posix_spawn (vfork) is several times cheaper than fork for a large daemon; every
        # fd we hold is O_CLOEXEC, so the job inherits only stdin/stdout/stderr.
        pid = os.posix_spawn(
            sys.executable,
            argv,
            env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log_fd, 1),
                (os.POSIX_SPAWN_DUP2, log_fd, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log_fd)
    return Launched(pid, process_start_time(pid) or 0.0, cgroup=cgroup)


def process_start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
