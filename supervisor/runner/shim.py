"""The native command-job shim (shim.c, built by setup.py): where it is, and handing a command to it.

A command job's process validates its params, builds the argv and starts the command in
Python, then replaces itself with the shim, which relays the command's output and reports its
outcome: ~0.1 MB of its own instead of the ~3 MB a waiting CPython process dirties. Where no
shim is built, command.relay_command does the same work in Python.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor.logs import job_line
from supervisor.runner.files import RunFiles
from supervisor.runner.spec import JobSpec

_BINARY = Path(__file__).with_name("runspace-shim")
PROTOCOL = "6"  # shim.c's PROTOCOL: its command line and result format


@dataclass(frozen=True)
class ShimJob:
    """A started command: it stays the child of this process across the exec."""

    pid: int
    output: int  # the read end of its stdout+stderr pipe
    name: str  # its argv[0], for the error messages


def native_shim() -> Path | None:
    """The built shim, or None: there was no C compiler when the package was installed, or
    the binary is from another version of shim.c (an editable checkout not reinstalled)."""
    if not os.access(_BINARY, os.X_OK):
        return None
    try:
        answer = subprocess.run([_BINARY, "--protocol"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        answer = ""
    if answer != PROTOCOL:
        from loguru import logger  # the daemon's; job processes import this module too

        logger.warning("{} speaks protocol {!r}, not {}: reinstall runspace to rebuild it; command jobs use the "
                       "Python relay meanwhile", _BINARY, answer, PROTOCOL)
        return None
    return _BINARY


def shim_argv(shim: Path, command: ShimJob, spec: JobSpec, files: RunFiles,
              user_log_fd: int | None, started: int | None) -> list[str]:
    """The command line shim.c's main() reads (its usage line)."""
    return [str(shim), str(files.result), str(files.progress), spec.events_socket or "",
            spec.user_log, _fd_arg(user_log_fd), spec.id, spec.job,
            str(command.pid), str(command.output), command.name,
            str(-1 if spec.max_log_bytes is None else spec.max_log_bytes), str(files.started), _fd_arg(started)]


def _fd_arg(fd: int | None) -> str:
    return str(-1 if fd is None else fd)


def holds_fds_safely(shim: Path) -> bool:
    """Whether the shim may hold a root-opened fd for a job's user: a binary its user cannot
    read keeps the exec'd process non-dumpable (no pidfd_getfd) before shim.c says so itself."""
    try:
        return shim.stat().st_mode & 0o044 == 0
    except OSError:
        return False


def exec_shim(shim: Path, command: ShimJob, spec: JobSpec, files: RunFiles, user_log_fd: int | None,
              started: int | None, env: Mapping[str, str]) -> None:
    """Become the shim; returns only if it cannot be started (the caller relays the command
    itself), or must not be: a job run as another user, with a shim others may read.
    `started`: the run-once guard's fd while this process holds it; the shim writes the
    result into it and links it as result.json (job_main.write_result), one inode less.
    `env`: the shim's environment, never the command's (which its caller may choose)."""
    if user_log_fd is not None and not holds_fds_safely(shim):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        for fd in (command.output, user_log_fd, started):
            if fd is not None:
                os.set_inheritable(fd, True)
        os.execve(shim, shim_argv(shim, command, spec, files, user_log_fd, started), env)
    except OSError as exc:
        os.write(2, job_line(f"runspace: cannot start the native shim ({exc}); relaying the command from Python").encode())
