"""What a store error means (daemon process): a driver's exception classified, and the
SQLite file looked at (deleted, replaced, frozen by chattr). Used by supervisor/store/guard.py
and the API's last-resort error handler."""

from __future__ import annotations

import array
import errno
import fcntl
import os
import sqlite3
import sys
from pathlib import Path

from supervisor.errors import NoSpace, StoreUnavailable

_FS_IOC_GETFLAGS, _FS_IMMUTABLE_FL, _FS_APPEND_FL = 0x80086601, 0x10, 0x20  # linux/fs.h


def classify(exc: BaseException, file: Path | None = None) -> StoreUnavailable | None:
    """What a driver error means for the daemon, or None when it is no store fault (a bug, a conflict)."""
    if isinstance(exc, StoreUnavailable):
        return exc
    psycopg = sys.modules.get("psycopg")  # imported only with a PostgreSQL store
    if psycopg is not None and isinstance(exc, psycopg.Error):
        if isinstance(exc, psycopg.errors.DiskFull):
            return NoSpace("the PostgreSQL server is out of disk space; the job store refuses writes")
        if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
            return StoreUnavailable("the PostgreSQL job store does not answer; retry later")
        return None
    if isinstance(exc, sqlite3.Error):
        if isinstance(exc, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError,
                            sqlite3.DataError, sqlite3.NotSupportedError)):
            return None
        where = f"the job store {file}" if file else "the job store"
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or _disk_full(file):
            return NoSpace(f"no space left on the disk of {where}; new jobs are refused until space is freed")
        return StoreUnavailable(f"{where} cannot be used ({exc}); retry later")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return NoSpace("no space left for the job store; new jobs are refused until space is freed")
    return None


def _disk_full(file: Path | None) -> bool:
    """SQLite reports ENOSPC on its WAL as a plain I/O error: ask the file system."""
    if file is None:
        return False
    try:
        st = os.statvfs(file.parent)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def file_identity(file: Path | None) -> tuple[int, int] | None:
    if file is None:
        return None
    try:
        st = os.stat(file)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def frozen_files(file: Path) -> list[Path]:
    """The store's files (the database, its -wal and -shm) that `chattr +i` or `+a` froze."""
    frozen = []
    for path in (file, file.with_name(file.name + "-wal"), file.with_name(file.name + "-shm")):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            flags = array.array("i", [0])
            fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        except OSError:  # a file system without these flags (tmpfs)
            continue
        finally:
            os.close(fd)
        if flags[0] & (_FS_IMMUTABLE_FL | _FS_APPEND_FL):
            frozen.append(path)
    return frozen
