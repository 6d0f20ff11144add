"""The fork server process: imports the worker and every job module once, then forks jobs.

A forked job starts in a few milliseconds and shares the pre-imported pages copy-on-write,
instead of paying an interpreter start and all imports per job. The fork itself happens
ahead of time: a spare child waits for the next job (runner/spares.py). Started by the daemon
as `python -m supervisor.runner.zygote FD CGROUP_ROOT|- MODULE...`; FD is a stream socket to
the daemon. Protocol: the daemon sends one JSON line per job, the zygote answers
`{"pid": N, "cgroup": PATH|null}` or `{"error": …}`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from supervisor import worker
from supervisor.registry import import_module_file
from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER, RunFiles, write_json_atomic
from supervisor.runner.reap import exited_children
from supervisor.runner.spares import Spares

_children: dict[int, Path] = {}
_QUIET = 0.002
_LIBC = ctypes.CDLL(None)  # opened once here, not in every job


def _reap(*_: object) -> None:
    """Record each job's raw exit status next to its result, for jobs that die without one."""
    for pid, status in exited_children():
        run_dir = _children.pop(pid, None)
        # Only a job that ended without a result needs its raw status (one file less per job).
        if run_dir is not None and not RunFiles(run_dir).result.exists():
            with contextlib.suppress(OSError):  # the daemon may have finished and removed the dir
                write_json_atomic(RunFiles(run_dir).exit_status, {"pid": pid, "status": status})


def _stamp_marker(job_id: str) -> None:
    """Write the job id over the placeholder in this process's original environment block.

    A forked process shows the environment it was exec'd with in /proc/PID/environ, and
    that is where the daemon looks for a job's marker. The zygote was started with a
    placeholder of the same length, so the id can be written in place, like setproctitle
    rewrites argv. Descendants that exec get the marker from os.environ as usual.
    """
    prefix = f"{ENV_MARKER}=".encode()
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(_LIBC, "environ")
    index = 0
    while environ[index]:
        address = environ[index]
        if ctypes.string_at(address, len(prefix)) == prefix:
            value = job_id.encode()
            if len(value) == len(MARKER_PLACEHOLDER) and ctypes.string_at(address + len(prefix)) == MARKER_PLACEHOLDER.encode():
                ctypes.memmove(address + len(prefix), value, len(value))
            return
        index += 1


def _await_job(pipe: int, server: socket.socket, join: Path | None) -> None:
    """In a spare child, ahead of its job: the job-independent set-up, then wait for the job."""
    try:
        os.close(server.detach())  # detach: the zygote's reader must not close a reused fd later
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        if join is not None:  # no clone3 here: migrate now, while no job is waiting
            Path(join, "cgroup.procs").write_text(str(os.getpid()))
        request = _read_all(pipe)
        if not request:
            os._exit(0)  # the fork server closed without giving us a job
        _become_job(json.loads(request))
    finally:
        os._exit(70)  # worker.main() exits itself; reaching here means set-up failed


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _become_job(request: dict[str, Any]) -> None:
    """Same set-up as a posix_spawned worker, then run the worker (which exits itself)."""
    _stamp_marker(request["env"][ENV_MARKER])
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    _set_environ(request["env"])
    sys.argv = ["supervisor.worker", request["run_dir"]]
    worker.main(in_cgroup=True)


def _set_environ(env: dict[str, str]) -> None:
    """Only the differences: a job's environment is mostly the daemon's (each putenv costs)."""
    for key in [key for key in os.environ if key not in env]:
        del os.environ[key]
    for key, value in env.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def serve(server: socket.socket, cgroup_root: Path | None) -> None:
    signal.signal(signal.SIGCHLD, _reap)
    spares = Spares(cgroup_root, lambda pipe, join: _await_job(pipe, server, join))
    spares.remove_leftovers()
    while spares.short():
        spares.add()
    server.sendall(b'{"ready": true}\n')
    # EOF (or a reset: the daemon closed without reading all we sent) means the daemon is
    # gone; our jobs live on in their own sessions.
    with contextlib.suppress(ConnectionResetError), contextlib.closing(spares):
        for line in server.makefile("rb"):
            _start(json.loads(line), spares, server)
            _refill_when_quiet(spares, server)


def _refill_when_quiet(spares: Spares, server: socket.socket) -> None:
    """Fork replacement spares once the daemon has been quiet for a moment: a fork holds a
    core for ~1.5 ms, which the daemon (answering the submit) and the new job need first.
    The daemon waits for each answer, so no request can sit unseen in the reader's buffer."""
    while spares.short():
        if select.select([server], [], [], _QUIET)[0]:
            return  # the next request first (from the other spare, or forked on the spot)
        spares.add()


def _start(request: dict[str, Any], spares: Spares, server: socket.socket) -> None:
    try:
        spare = spares.start(request, _children)
    except OSError as exc:
        server.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
        return
    cgroup = str(spare.cgroup) if spare.cgroup else None
    server.sendall(json.dumps({"pid": spare.pid, "cgroup": cgroup}).encode() + b"\n")


def main() -> None:
    server = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(server.fileno(), False)
    cgroup_root = Path(sys.argv[2]) if sys.argv[2] != "-" else None
    for module in sys.argv[3:]:  # the modules the daemon loaded and trusted, imported once
        try:
            import_module_file(Path(module))
        except Exception:
            pass  # the job's own import in the worker reports the error
    import supervisor.command  # noqa: F401  (used by every command job)

    # Everything imported so far lives for good: keep the collector from touching (and so
    # copying) those pages in every forked job.
    gc.freeze()
    serve(server, cgroup_root)


if __name__ == "__main__":
    main()
