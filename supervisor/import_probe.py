"""The import probe process: tries each job module's import in a child of its own, for the daemon.

Importing runs a module's top-level code, which may block, exit or crash the process. The
daemon (supervisor/job_modules.py) starts `python -m supervisor.import_probe`, writes
`{"timeout": S, "modules": [{"path": …, "sha256": …}, …]}` to its stdin and reads one JSON
line per module from its stdout, in order: `{"path": …, "error": null | "…", "traceback":
null | "…"}`. Each import happens in a forked child in a session of its own (what it starts
at import is killed with it) given `timeout` seconds; this process itself runs no job code,
so it always answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from supervisor.errors import RunspaceError
from supervisor.jobsource import import_source, read_verified
from supervisor.registry import JOB_ATTR  # noqa: F401  (pydantic and the decorators, imported once before the forks)

Report = dict[str, Any]


def _import_here(path: Path, sha256: str, report_fd: int) -> None:
    """In the forked child: import the verified source, write the outcome, exit."""
    try:
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):  # fd 1 is the probe's answer to the daemon: never the module's to print on
            os.dup2(devnull, fd)
        try:
            import_source(read_verified(path, sha256))
            report: Report = {"error": None, "traceback": None}
        except RunspaceError as exc:  # refused (changed since the check): nothing of it ran
            report = {"error": f"{type(exc).__name__}: {exc}", "traceback": None}
        except BaseException as exc:  # SystemExit too: a module's sys.exit() is its failure
            report = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        os.write(report_fd, json.dumps(report).encode() + b"\n")
    finally:
        os._exit(0)


def _read_report(fd: int, deadline: float) -> tuple[Report | None, bool]:
    """(the child's report or None, whether the deadline passed first)."""
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None, True
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return None, False
        data += chunk
    return json.loads(data.split(b"\n", 1)[0]), False


def _ended(pid: int, deadline: float) -> os.waitid_result | None:
    """How the child ended, left unreaped (so its pid, our session id, stays ours); None if it runs on."""
    while True:
        ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if ended is not None or time.monotonic() >= deadline:
            return ended
        time.sleep(0.01)


def _why_it_ended(ended: os.waitid_result | None, timeout: float) -> str:
    if ended is None:
        return f"ImportTimeout: importing did not finish within {timeout:g} s (RUNSPACE_IMPORT_TIMEOUT)"
    if ended.si_code == os.CLD_EXITED:
        return f"ImportExit: the module ended the process importing it (exit code {ended.si_status})"
    try:
        name = signal.Signals(ended.si_status).name
    except ValueError:
        name = f"signal {ended.si_status}"
    return f"ImportCrash: the process importing the module was killed by {name}"


def probe(path: Path, sha256: str, timeout: float) -> Report:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _import_here(path, sha256, write_end)
    os.close(write_end)
    deadline = time.monotonic() + timeout
    try:
        report, late = _read_report(read_end, deadline)
        ended = _ended(pid, deadline) if report is None and not late else None
    finally:
        os.close(read_end)
        with contextlib.suppress(ProcessLookupError):  # the child's session: it, and what it started
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)  # unreaped, so still ours (maybe before its setsid)
        os.waitpid(pid, 0)
    return {"path": str(path), **(report or {"error": _why_it_ended(ended, timeout), "traceback": None})}


def main() -> None:
    request = json.load(sys.stdin)
    for module in request["modules"]:
        report = probe(Path(module["path"]), module["sha256"], float(request["timeout"]))
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
