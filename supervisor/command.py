"""Command jobs: run an argv (never a shell string) and turn its output into log and progress.

Progress protocol for command jobs: a stdout line `::progress DONE TOTAL [message]` reports
progress and `::log text` writes to the user's log; every other line goes to the job log.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
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
    if any("\0" in a for a in argv):
        raise ValueError("embedded null byte")  # as Popen and exec say it
    return argv


def run_command(argv: list[str], ctx: JobContext, cwd: Path) -> dict[str, Any]:
    """The Python shim: used by `runspace run` and wherever the native one (shim.c) is not built."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    # Forward SIGTERM so the command gets its chance to clean up even if only we were signalled.
    signal.signal(signal.SIGTERM, lambda *_: proc.send_signal(signal.SIGTERM))
    assert proc.stdout is not None
    for raw in proc.stdout:
        _handle_line(raw.decode("utf-8", "replace").rstrip("\n"), ctx)
    code = proc.wait()
    if code == 0:
        return {"state": "succeeded", "result": {"exit_code": 0}, "exit_code": 0}
    if code < 0:
        name = signal.Signals(-code).name
        error = {"type": "CommandKilled", "message": f"{argv[0]} was killed by {name}"}
        return {"state": "failed", "error": error, "exit_code": None, "signal": -code}
    error = {"type": "CommandFailed", "message": f"{argv[0]} exited with code {code}"}
    return {"state": "failed", "error": error, "exit_code": code}
