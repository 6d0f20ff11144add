"""The import probe process: tries job modules' imports in a throwaway child, for the daemon.

Importing runs a module's top-level code, which may block, exit or crash the process. The
daemon (supervisor/job_modules.py) starts `python -m supervisor.import_probe`, writes
`{"timeout": S, "modules": [{"path": …, "sha256": …}, …]}` to its stdin and reads one JSON
line per module from its stdout, in order: `{"path": …, "error": null | "…", "traceback":
null | "…"}`. The imports happen in a forked child in a session of its own (what they start
is killed with it), each given `timeout` seconds; this process itself runs no job code, so
it always answers.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import supervisor.registry  # noqa: F401  (pydantic and the @job decorators, imported once, before the forks)
from supervisor.errors import RunspaceError
from supervisor.jobsource import import_source, read_verified

_LIBC = ctypes.CDLL(None)
_PR_SET_PDEATHSIG = 1
Report = dict[str, Any]
Module = tuple[Path, str]  # path, sha256 of the checked source


def _import_all(modules: list[Module], report_fd: int, probe_pid: int) -> None:
    """In the forked child: import each verified source in turn, reporting each, then exit."""
    try:
        os.setsid()
        # Killed with the probe (the daemon kills the probe when it stops during a reload).
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != probe_pid:  # the probe died before that took hold
            return
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):  # fd 1 is the probe's answer to the daemon: never the modules' to print on
            os.dup2(devnull, fd)
        for path, sha256 in modules:
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


class _Reports:
    """The child's report lines, each awaited until a deadline."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._data = b""

    def next(self, deadline: float) -> tuple[Report | None, bool]:
        """(the next report or None, whether the deadline passed first)."""
        while b"\n" not in self._data:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._fd], [], [], left)[0]:
                return None, True
            chunk = os.read(self._fd, 1 << 16)
            if not chunk:
                return None, False
            self._data += chunk
        line, self._data = self._data.split(b"\n", 1)
        return json.loads(line), False


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


def probe(modules: list[Module], timeout: float) -> Iterator[Report]:
    """One report per module, in order. All are imported in one child, as in the daemon; a
    module that blocks or ends that child is reported so, and a new child goes on after it."""
    probe_pid = os.getpid()
    while modules:
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _import_all(modules, write_end, probe_pid)
        os.close(write_end)
        reports = _Reports(read_end)
        try:
            while modules:
                deadline = time.monotonic() + timeout
                report, late = reports.next(deadline)
                path, _ = modules.pop(0)
                if report is None:
                    ended = None if late else _ended(pid, deadline)
                    yield {"path": str(path), "error": _why_it_ended(ended, timeout), "traceback": None}
                    break
                yield {"path": str(path), **report}
        finally:
            os.close(read_end)
            with contextlib.suppress(ProcessLookupError):  # the child's session: it, and what it started
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)  # unreaped, so still ours (maybe before its setsid)
            os.waitpid(pid, 0)


def main() -> None:
    request = json.load(sys.stdin)
    modules = [(Path(module["path"]), module["sha256"]) for module in request["modules"]]
    for report in probe(modules, float(request["timeout"])):
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
