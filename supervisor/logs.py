"""Per-job and per-user log lines: formatting, safe paths, appending, reading and following."""

from __future__ import annotations

import errno
import os
import re
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from supervisor.errors import FieldError, InvalidParams

USER_LOG_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$"  # and not "." or ".." (check_log_user)
_USER_LOG_NAME = re.compile(USER_LOG_PATTERN)


def check_log_user(value: str, loc: list[str | int]) -> str:
    """A log user names a file under logs/users/, so it must never be a path."""
    if not _USER_LOG_NAME.fullmatch(value) or value in (".", ".."):
        raise InvalidParams(
            f"log user {value!r} is not a safe name",
            [FieldError(loc, "must be 1-64 letters, digits, '.', '_', '-' or '@', not starting with '.' or '-'")],
        )
    return value


def stamp(ts: float | None = None) -> str:
    dt = datetime.fromtimestamp(time.time() if ts is None else ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


MAX_LINE_BYTES = 64 * 1024  # a longer entry is split into lines of at most this (readers read 1 MiB at once)
CONTINUED = "[continued] "  # starts each line that carries on the entry before it
# C0 controls but tab, DEL and C1: a job must not move a reader's terminal cursor or forge lines.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """ESC and the other control characters but tab as visible escapes (\\x1b, \\n, \\r)."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def one_line(text: str) -> str:
    return escape_controls(text.rstrip("\n"))


def split_entry(text: str, limit: int = MAX_LINE_BYTES) -> list[str]:
    """One log entry as lines of at most `limit` UTF-8 bytes each (cut between characters);
    every line after the first starts with CONTINUED."""
    data = one_line(text).encode("utf-8", "replace")
    if len(data) <= limit:
        return [data.decode("utf-8")]
    pieces, start, room = [], 0, limit
    while start < len(data):
        end = min(start + room, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # not inside a character
            end -= 1
        pieces.append(("" if start == 0 else CONTINUED) + data[start:end].decode("utf-8"))
        start, room = end, limit - len(CONTINUED)
    return pieces


def _lines(prefix: str, text: str) -> str:
    room = MAX_LINE_BYTES - len(prefix.encode()) - 1  # a whole line, newline included, fits MAX_LINE_BYTES
    return "".join(f"{prefix}{piece}\n" for piece in split_entry(text, max(room, 1024)))


def job_line(text: str) -> str:
    """Timestamped job-log line(s) for one entry."""
    return _lines(f"{stamp()} ", text)


def user_line(job_id: str, job: str, text: str) -> str:
    """User-log line(s) for one entry: each names the job, so readers can filter by it."""
    return _lines(f"{stamp()} {job_id} {job} ", text)


class CappedOutput:
    """A job process's writes to its job log (stdout and stderr are that file): up to `limit`
    bytes in the file, then one marker line, then nothing; the job goes on."""

    def __init__(self, limit: int | None, fd: int = 1) -> None:
        try:
            used = os.fstat(fd).st_size  # an earlier attempt's output counts: the cap is the job's
        except OSError:
            used = 0
        self._room = None if limit is None else max(limit - used, 0)
        self._limit = limit
        self._dropping = False
        self._lock = threading.Lock()

    def write(self, fd: int, data: bytes) -> None:
        with self._lock:
            if self._room is None or len(data) <= self._room:
                os.write(fd, data)
                if self._room is not None:
                    self._room -= len(data)
            elif not self._dropping:
                self._dropping = True
                os.write(fd, job_line(f"runspace: this job's output reached max_log_bytes ({self._limit}); "
                                      "the rest is dropped").encode())


def job_log_path(log_dir: Path, job_id: str) -> Path:
    return log_dir / "jobs" / f"{job_id}.log"


def user_log_path(log_dir: Path, user: str) -> Path:
    return log_dir / "users" / f"{user}.log"


def append_line(path: Path, line: str) -> None:
    """One write() on an O_APPEND fd: lines from concurrent processes never tear or interleave."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)


READ_LIMIT = 1 << 20  # bytes a log read returns at most


def read_from(path: Path, offset: int, limit: int = READ_LIMIT) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(limit)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # past the largest file this filesystem allows: nothing there
            return b""
        raise
