"""Command jobs: run an argv (never a shell string) and turn its output into log and progress.

Progress protocol for command jobs: a stdout line `::progress DONE TOTAL [message]` reports
progress and `::log text` writes to the user's log; every other line goes to the job log.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from supervisor.context import JobContext
from supervisor.logs import job_line


def _handle_line(line: str, ctx: JobContext) -> None:
    if line.startswith("::progress "):
        parts = line.split(maxsplit=3)
        try:
            done, total = float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            os.write(1, job_line(line).encode())
            return
        ctx.progress(done, total, parts[3] if len(parts) > 3 else None)
    elif line.startswith("::log "):
        ctx.log(line[len("::log ") :])
    else:
        os.write(1, job_line(line).encode("utf-8", "replace"))


def check_argv(argv: Any) -> list[str]:
    """What a command job's function returned, if it is an argv that can be executed."""
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise TypeError("a command job must return a non-empty list of strings (argv)")
    return argv


def start_command(argv: list[str]) -> tuple[int, int]:
    """Start argv in the current directory with stdout and stderr on a pipe: (pid, the pipe's
    read end). posix_spawnp: a vfork, cheap even from a large process; FileNotFoundError and
    the like are raised here, naming the program."""
    read_end, write_end = os.pipe()
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, write_end, 1),
            (os.POSIX_SPAWN_DUP2, write_end, 2),
        ], setsigmask=(), setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))  # Python ignores these; a command must not
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    return pid, read_end


def relay_command(pid: int, output: int, name: str, ctx: JobContext) -> dict[str, Any]:
    """The Python shim (runspace-shim does the same in C): the command's output lines to the
    job log, progress and user log, then its outcome."""
    # Forward SIGTERM so the command gets its chance to clean up even if only we were signalled.
    previous = signal.signal(signal.SIGTERM, lambda *_: os.kill(pid, signal.SIGTERM))
    try:
        with os.fdopen(output, "rb") as lines:
            for raw in lines:
                _handle_line(raw.decode("utf-8", "replace").rstrip("\n"), ctx)
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 0:
        return {"state": "succeeded", "result": {"exit_code": 0}, "exit_code": 0}
    if code < 0:
        error = {"type": "CommandKilled", "message": f"{name} was killed by {signal.Signals(-code).name}"}
        return {"state": "failed", "error": error, "exit_code": None, "signal": -code}
    error = {"type": "CommandFailed", "message": f"{name} exited with code {code}"}
    return {"state": "failed", "error": error, "exit_code": code}
