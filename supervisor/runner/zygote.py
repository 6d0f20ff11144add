"""The fork server process: imports the worker and every job module once, then forks jobs.

A forked job starts in a few milliseconds and shares the pre-imported pages copy-on-write,
instead of paying an interpreter start and all imports per job. Started by the daemon as
`python -m supervisor.runner.zygote FD MODULE...`; FD is a stream socket to the daemon.
Protocol: the daemon sends one JSON line per job, the zygote answers `{"pid": N}` or `{"error": …}`.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from supervisor import worker
from supervisor.registry import import_module_file
from supervisor.runner.clone import CgroupFork
from supervisor.runner.files import ENV_MARKER, MARKER_PLACEHOLDER, RunFiles, write_json_atomic
from supervisor.runner.reap import exited_children

_children: dict[int, Path] = {}


def _reap(*_: object) -> None:
    """Record each job's raw exit status next to its result, for jobs that die without one."""
    for pid, status in exited_children():
        run_dir = _children.pop(pid, None)
        if run_dir is not None:
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
    libc = ctypes.CDLL(None)
    environ = ctypes.POINTER(ctypes.c_void_p).in_dll(libc, "environ")
    index = 0
    while environ[index]:
        address = environ[index]
        if ctypes.string_at(address, len(prefix)) == prefix:
            value = job_id.encode()
            if len(value) == len(MARKER_PLACEHOLDER) and ctypes.string_at(address + len(prefix)) == MARKER_PLACEHOLDER.encode():
                ctypes.memmove(address + len(prefix), value, len(value))
            return
        index += 1


def _become_job(request: dict[str, Any], server: socket.socket, in_cgroup: bool) -> None:
    """In the forked child: same set-up as a posix_spawned worker, then run the worker."""
    try:
        server.close()
        _stamp_marker(request["env"][ENV_MARKER])
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["supervisor.worker", request["run_dir"]]
        worker.main(in_cgroup=in_cgroup)
    finally:
        os._exit(70)  # worker.main() exits itself; reaching here means set-up failed


def serve(server: socket.socket) -> None:
    signal.signal(signal.SIGCHLD, _reap)
    server.sendall(b'{"ready": true}\n')
    reader = server.makefile("rb")
    forker = CgroupFork()
    for line in reader:  # EOF: the daemon is gone; our jobs live on in their own sessions
        request = json.loads(line)
        try:
            cgroup = request.get("cgroup")
            pid, in_cgroup = forker.fork(Path(cgroup) if cgroup else None)
        except OSError as exc:
            server.sendall(json.dumps({"error": str(exc)}).encode() + b"\n")
            continue
        if pid == 0:
            _become_job(request, server, in_cgroup)
        _children[pid] = Path(request["run_dir"])
        server.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def main() -> None:
    server = socket.socket(fileno=int(sys.argv[1]))
    os.set_inheritable(server.fileno(), False)
    for module in sys.argv[2:]:  # the modules the daemon loaded and trusted, imported once
        try:
            import_module_file(Path(module))
        except Exception:
            pass  # the job's own import in the worker reports the error
    import supervisor.command  # noqa: F401  (used by every command job)

    # Everything imported so far lives for good: keep the collector from touching (and so
    # copying) those pages in every forked job.
    gc.freeze()
    serve(server)


if __name__ == "__main__":
    main()
