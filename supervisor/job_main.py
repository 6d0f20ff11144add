"""Runs inside the job process: load the job type, validate, run it, write the result file.

Started as `python -m supervisor.job_main <run dir>` by the daemon (see runner/launch.py).
"""

from __future__ import annotations

import io
import json
import os
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from supervisor.context import JobContext
from supervisor.logs import MAX_LINE_BYTES, CappedOutput, append_line, job_line, user_line
from supervisor.registry import JobType, load_job_type
from supervisor.runner.files import RunFiles, write_json_atomic
from supervisor.runner.identity import RunAs, drop_privileges, hand_over, read_root_spec
from supervisor.runner.shim import ShimJob, exec_shim
from supervisor.runner.spec import JobSpec

EXIT_ALREADY_STARTED = 75
_PROGRESS_INTERVAL = 0.1  # at most ten progress reports a second reach the daemon


class StampedStream(io.TextIOBase):
    """Replaces sys.stdout/stderr: each complete line is written with a timestamp, in one write()."""

    def __init__(self, fd: int, out: CappedOutput) -> None:
        self._fd = fd
        self._out = out
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            if len(self._pending) > MAX_LINE_BYTES:  # no newline in sight: out in pieces, not held in memory
                lines.append(self._pending)
                self._pending = ""
            if lines:
                self._out.write(self._fd, "".join(job_line(line) for line in lines).encode("utf-8", "replace"))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._out.write(self._fd, job_line(self._pending).encode("utf-8", "replace"))
                self._pending = ""


class FileReporter:
    """ctx.log and ctx.progress for a job process: job log, user log, progress file, daemon ping."""

    def __init__(self, spec: JobSpec, files: RunFiles, out: CappedOutput, hold_user_log: bool = False) -> None:
        self._spec = spec
        self._out = out
        self._files = files
        self._user_log = Path(spec.user_log)
        self._user_log_fd = _open_append(self._user_log) if hold_user_log else None
        self._events = spec.events_socket
        self._last_sent = 0.0
        self._message: str | None = None
        self._sock: socket.socket | None = None  # made at the first report: most jobs send none

    @property
    def user_log_fd(self) -> int | None:
        """The user log held open for a job run as another user, who may append but not open it."""
        return self._user_log_fd

    def log(self, text: str) -> None:
        sys.stdout.flush()
        self.output(text)
        self.event(text)

    def output(self, text: str) -> None:
        """A line in the job log only (a command's output line)."""
        self._out.write(1, job_line(text).encode("utf-8", "replace"))

    def progress(self, done: float, total: float | None, message: str | None) -> None:
        now = time.monotonic()
        final = total is not None and done >= total
        if message:
            self.event(f"progress {done:g}/{total:g}: {message}" if total else f"progress {done:g}: {message}")
        if not final and not message and now - self._last_sent < _PROGRESS_INTERVAL:
            return
        self._last_sent = now
        # The daemon reads only the last report in progress.json: each carries the last message given.
        self._message = message or self._message
        report = {"id": self._spec.id, "progress": done, "total": total, "message": self._message}
        write_json_atomic(self._files.progress, report)
        if self._events:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                    self._sock.setblocking(False)
                self._sock.sendto(json.dumps(report).encode(), self._events)
            except OSError:
                pass  # the daemon is down or busy: it reads progress.json when it looks

    def event(self, text: str) -> None:
        """A line in the user's log only."""
        line = user_line(self._spec.id, self._spec.job, text)
        try:
            if self._user_log_fd is not None:
                os.write(self._user_log_fd, line.encode("utf-8", "replace"))
            else:
                append_line(self._user_log, line)
        except OSError as exc:
            os.write(2, job_line(f"runspace: cannot write user log: {exc}").encode())


def _open_append(path: Path) -> int | None:
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
    except OSError:
        return None


def run_python(jt: JobType, params: Any, ctx: JobContext) -> dict[str, Any]:
    result = jt.func(params, ctx)
    json.dumps(result)  # fail here, as the job's error, if the result cannot be stored
    return {"state": "succeeded", "result": result, "exit_code": 0}


def run_job(jt: JobType, spec: JobSpec, ctx: JobContext, files: RunFiles,
            reporter: FileReporter, started: int | None) -> dict[str, Any]:
    from supervisor.command import check_argv, relay_command, start_command

    try:
        params = jt.validate(spec.params)
        if jt.kind == "command":
            # The environment the daemon gave this job, before the type's code adds the command's
            # own (exec's `env` is the caller's): LD_PRELOAD or LD_LIBRARY_PATH there would run the
            # caller's code in a dynamically linked shim, which holds the root-opened user log.
            job_env = dict(os.environ)
            argv = check_argv(jt.func(params, ctx))
            pid, output = start_command(argv)  # first: the shim's exec is off the command's start
            if spec.shim:  # the native shim takes over the command; returns only if it cannot
                exec_shim(Path(spec.shim), ShimJob(pid, output, argv[0]), spec, files, reporter.user_log_fd,
                          started, job_env)
            return relay_command(pid, output, argv[0], ctx)
        return run_python(jt, params, ctx)
    except Exception as exc:
        return failed(exc)


def failed(exc: Exception) -> dict[str, Any]:
    """The outcome of a job that raised: traceback in its log, type and message in its status."""
    traceback.print_exc()
    return {"state": "failed", "error": {"type": type(exc).__name__, "message": str(exc)}, "exit_code": 1}


def claim_start(files: RunFiles) -> int | None:
    """The run-once guard: only the first process to create `started` may run the job.
    Returns its fd, kept for write_result; None when another process claimed the job first."""
    try:
        return os.open(files.started, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return None


def write_result(files: RunFiles, outcome: dict[str, Any], started: int | None) -> None:
    """result.json. While we still own `started`, the result is written into it and linked as
    result.json: it appears whole, as with write_json_atomic's rename, without creating a
    temp file (a new inode costs ~0.3 ms per job on ext4 without a journal, measured)."""
    if started is not None:
        try:
            data = json.dumps(outcome).encode()
            while data:
                data = data[os.write(started, data):]
            os.link(files.started, files.result)
            return
        except OSError:
            pass  # e.g. a filesystem without hard links: the temp-file way
        finally:
            os.close(started)
    write_json_atomic(files.result, outcome)


def join_cgroup(path: str | None) -> None:
    if path:
        try:
            Path(path, "cgroup.procs").write_text(str(os.getpid()))
        except OSError as exc:
            print(f"runspace: could not join cgroup {path}: {exc}", file=sys.stderr)


def import_job(spec: JobSpec) -> JobType | dict[str, Any]:
    """The job type, or the failed outcome when its module no longer imports."""
    try:
        # The source the daemon checked, compiled here: never the file's bytecode cache, and
        # refused (naming the file) if the file changed since the check.
        jt = load_job_type(Path(spec.module), spec.job, spec.module_sha256)
        # run_job's lazy import, done before the privilege drop: the job user may not be
        # able to read the interpreter's own files (a Python installed under /root, say).
        import supervisor.command  # noqa: F401
        return jt
    except Exception as exc:
        return failed(exc)


def main(spec: JobSpec | None = None) -> None:
    """The fork server passes the `spec` itself (its `cgroup` is None: the job was created
    inside it); a posix_spawned job process reads spec.json from its run dir and joins its cgroup."""
    files = RunFiles(Path(sys.argv[1]))
    spec = spec if spec is not None else JobSpec.from_json(read_root_spec(files.spec))
    join_cgroup(spec.cgroup)
    started = claim_start(files)
    if started is None:
        sys.exit(EXIT_ALREADY_STARTED)
    out = CappedOutput(spec.max_log_bytes)
    sys.stdout = StampedStream(1, out)
    sys.stderr = StampedStream(2, out)
    who = RunAs.from_spec(spec)
    # Opened while still root: the job user may append to the user log but not open it.
    reporter = FileReporter(spec, files, out, hold_user_log=who is not None)
    # Written by the job itself, so it comes before anything the job writes to the same log.
    reporter.event(f"started (pid {os.getpid()}, attempt {spec.attempt})")
    # Imported while still root, like the daemon (and the fork server) already did with this
    # trusted module: job code proper runs only after the drop.
    loaded = import_job(spec)
    if who is not None:
        # Once dropped, linking root's `started` is refused (fs.protected_hardlinks).
        os.close(started)
        started = None
        hand_over(files.dir, who)
        drop_privileges(who)
    if spec.kind == "command":  # the command starts in its tmp dir; a Python job makes it on first use
        files.make_tmp()
    os.chdir(files.workdir(spec.kind))
    ctx = JobContext(spec.id, spec.job, spec.requestor, spec.log_user, files.make_tmp, reporter)
    outcome = run_job(loaded, spec, ctx, files, reporter, started) if isinstance(loaded, JobType) else loaded
    sys.stdout.flush()
    sys.stderr.flush()
    write_result(files, outcome, started)
    os._exit(0 if outcome["state"] == "succeeded" else 1)


if __name__ == "__main__":
    main()
