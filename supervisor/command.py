"""Command jobs (job process): run an argv (never a shell string) and turn its output into log and progress.

Progress protocol for command jobs: a stdout line `::progress DONE TOTAL [message]` reports
progress and `::log text` writes to the user's log; every other line goes to the job log.
"""

from __future__ import annotations

import os
import re
import select
import signal
from typing import Any

from supervisor.context import JobContext
from supervisor.logs import MAX_LINE_BYTES
from supervisor.reports import signal_name

_MAX_CHUNKS_PER_READ = 16  # 1 MiB of output between two looks at whether the command has exited
# The grammar runspace-shim (shim.c) parses too: ASCII whitespace between fields, DONE and
# TOTAL ASCII decimal numbers (or inf, infinity, nan), the rest of the line the message.
_WS = r"[\t\n\v\f\r\x1c-\x1f ]"
_NUMBER = r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|inf|infinity|nan)"
_PROGRESS = re.compile(rf"::progress {_WS}*({_NUMBER}){_WS}+({_NUMBER})(?:{_WS}+(.*)|{_WS}*)",
                       re.ASCII | re.IGNORECASE | re.DOTALL)


def _handle_line(line: str, ctx: JobContext) -> None:
    if progress := _PROGRESS.fullmatch(line):
        done, total, message = progress.groups()
        ctx.progress(float(done), float(total), message or None)
    elif line.startswith("::log "):
        ctx.log(line[len("::log ") :])
    else:
        ctx.reporter.output(line)


def check_argv(argv: Any) -> list[str]:
    """What a command job's function returned, if it is an argv that can be executed."""
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise TypeError("a command job must return a non-empty list of strings (argv)")
    return argv


def start_command(argv: list[str]) -> tuple[int, int]:
    """Start argv in the current directory with stdout and stderr on a pipe: (pid, the pipe's
    read end). posix_spawnp: a vfork, cheap even from a large process; FileNotFoundError and
    the like are raised here, naming the program.

    SIGTERM stays blocked in this process from here until a relay (relay_command, or
    runspace-shim after the exec) can forward it: until then it would end us, not the command."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
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


def _relay_until_exit(pid: int, output: int, ctx: JobContext) -> None:
    """Output lines until the command's main process exits, then what it wrote before: a
    background child still holding the pipe is a leftover (the daemon kills it), not the job."""
    pidfd = os.pidfd_open(pid)
    os.set_blocking(output, False)
    poller = select.poll()
    poller.register(output, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    pending, is_open = b"", True
    try:
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if is_open:  # after the exit too: the pipe holds all the command wrote before it
                chunk, is_open = _read_available(output)
                pending = _handle_lines(pending + chunk, ctx)
                if not is_open:
                    poller.unregister(output)
            if pidfd in ready:
                break
    finally:
        os.close(pidfd)
        os.close(output)
    if pending:  # a last line without its newline
        _handle_line(pending.decode("utf-8", "replace"), ctx)


def _handle_lines(data: bytes, ctx: JobContext) -> bytes:
    """Each whole line of `data`; what is left of a line not ended yet. A line longer than
    MAX_LINE_BYTES comes in pieces (cut between characters, as shim.c does): never all of it
    in memory."""
    *lines, pending = data.split(b"\n")
    for raw in lines:
        _handle_line(raw.decode("utf-8", "replace"), ctx)
    while len(pending) > MAX_LINE_BYTES:
        cut = MAX_LINE_BYTES
        while cut > 0 and pending[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte
            cut -= 1
        cut = cut or MAX_LINE_BYTES
        _handle_line(pending[:cut].decode("utf-8", "replace"), ctx)
        pending = pending[cut:]
    return pending


def _read_available(fd: int) -> tuple[bytes, bool]:
    """What the pipe holds now (bounded: a leftover may write without end), and whether it is still open."""
    chunks: list[bytes] = []
    for _ in range(_MAX_CHUNKS_PER_READ):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True


def relay_command(pid: int, output: int, name: str, ctx: JobContext) -> dict[str, Any]:
    """The Python relay (runspace-shim does the same in C): the command's output lines to the
    job log, progress and user log, then its outcome."""
    reaped = False

    def forward(*_: object) -> None:  # the command gets its chance to clean up, even if only we were signalled
        if not reaped:
            os.kill(pid, signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by start_command
    try:
        _relay_until_exit(pid, output, ctx)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: its pid is not reused yet
        reaped = True
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 0:
        return {"state": "succeeded", "result": {"exit_code": 0}, "exit_code": 0}
    if code < 0:
        error = {"type": "CommandKilled", "message": f"{name} was killed by {signal_name(-code)}"}
        return {"state": "failed", "error": error, "exit_code": None, "signal": -code}
    error = {"type": "CommandFailed", "message": f"{name} exited with code {code}"}
    return {"state": "failed", "error": error, "exit_code": code}
