"""The native command-job shim (shim.c, built by setup.py): where it is, and handing a job to it.

A command job's process validates its params and builds the argv in Python, then replaces
itself with the shim, which supervises the command: ~0.1 MB of its own instead of the ~3 MB a
waiting CPython process dirties. Without a built shim, command.run_command does the same work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from supervisor.logs import job_line
from supervisor.runner.files import RunFiles

_BINARY = Path(__file__).with_name("runspace-shim")


def native_shim() -> Path | None:
    """The built shim, or None (no C compiler at install time, or `native_shim = false`)."""
    return _BINARY if os.access(_BINARY, os.X_OK) else None


def shim_argv(shim: Path, argv: list[str], spec: dict[str, Any], files: RunFiles, user_log_fd: int | None) -> list[str]:
    """The command line shim.c's main() reads (its usage line)."""
    return [str(shim), str(files.result), str(files.progress), spec.get("events_socket") or "",
            spec["user_log"], str(-1 if user_log_fd is None else user_log_fd), spec["id"], spec["job"],
            "--", *argv]


def exec_shim(shim: Path, argv: list[str], spec: dict[str, Any], files: RunFiles, user_log_fd: int | None) -> None:
    """Become the shim; returns only if it cannot be started (the caller runs the command itself)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        if user_log_fd is not None:
            os.set_inheritable(user_log_fd, True)
        os.execv(shim, shim_argv(shim, argv, spec, files, user_log_fd))
    except OSError as exc:
        os.write(2, job_line(f"runspace: cannot start the native shim ({exc}); running the command from Python").encode())
