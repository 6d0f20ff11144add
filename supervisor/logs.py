"""Per-job and per-user log lines: formatting, safe paths, appending, reading and following."""

from __future__ import annotations

import errno
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

from supervisor.errors import FieldError, InvalidParams

_USER_LOG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._@-]{0,63}$")


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


def one_line(text: str) -> str:
    return text.rstrip("\n").replace("\r", "\\r").replace("\n", "\\n")


def job_line(text: str) -> str:
    return f"{stamp()} {one_line(text)}\n"


def user_line(job_id: str, job: str, text: str) -> str:
    return f"{stamp()} {job_id} {job} {one_line(text)}\n"


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


def read_from(path: Path, offset: int, limit: int = 1 << 20) -> bytes:
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
