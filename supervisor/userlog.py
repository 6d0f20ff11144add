"""The daemon's side of the unified per-user logs: lifecycle events, rotated by loguru.

Each user's file is a loguru FileSink of its own, held in a small LRU cache instead of being
added to the global logger: descriptors and the cost of a line stay bounded however many
users (or log_user values) there are. `logger.add` would cost ~2 ms per new user and make
every line visit every user's filter; a FileSink keeps loguru's rotation and retention.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from datetime import datetime
from pathlib import Path

from loguru import logger
from loguru._file_sink import FileSink  # loguru's own file sink (rotation, retention), used directly

from supervisor.errors import InvalidParams
from supervisor.logs import user_line, user_log_path
from supervisor.models import JobRecord

OPEN_USER_LOGS = 64  # files kept open; older ones are closed and reopened on their next line


class _Line(str):
    """What a FileSink writes: text, plus the `record["time"]` its time-based rotation reads."""

    __slots__ = ("record",)


class UserLog:
    """Appends lifecycle lines to logs/users/<user>.log. Jobs append to the same files."""

    def __init__(self, log_dir: Path, rotation: str, retention: str, open_files: int = OPEN_USER_LOGS) -> None:
        self._dir = log_dir
        self._rotation = rotation
        self._retention = retention
        self._open_files = open_files
        self._sinks: OrderedDict[str, FileSink] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        _check_sink_options(rotation=rotation, retention=retention)
        (log_dir / "users").mkdir(parents=True, exist_ok=True)
        (log_dir / "jobs").mkdir(parents=True, exist_ok=True)

    def event(self, rec: JobRecord, text: str) -> None:
        """Called from the event loop, and from a worker thread for a batch's `queued` lines."""
        line = _Line(user_line(rec.id, rec.job, text))
        line.record = {"time": datetime.now().astimezone()}
        with self._lock:
            try:
                self._sink(rec.log_user).write(line)
            except OSError as exc:  # a full disk or a lost file must not fail the submission or the job's end
                logger.error("cannot write to the user log of {}: {}", rec.log_user, exc)
                self._close(rec.log_user)

    def close(self) -> None:
        with self._lock:
            for user in list(self._sinks):
                self._close(user)

    def _sink(self, user: str) -> FileSink:
        sink = self._sinks.get(user)
        if sink is not None:
            self._sinks.move_to_end(user)
            return sink
        while len(self._sinks) >= self._open_files:
            self._close(next(iter(self._sinks)))
        sink = FileSink(str(user_log_path(self._dir, user)), rotation=self._rotation, retention=self._retention,
                        delay=True)
        self._sinks[user] = sink
        return sink

    def _close(self, user: str) -> None:
        sink = self._sinks.pop(user, None)
        if sink is not None:
            try:
                sink.stop()
            except OSError as exc:
                logger.error("cannot close the user log of {}: {}", user, exc)


def _check_sink_options(**options: str) -> None:
    """loguru parses rotation and retention only when a sink is made, at a user's first line,
    which would fail a submission after its job was stored: parse them now, at daemon start.
    In a scratch dir: retention deletes the files beside the sink that match its name."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, value in options.items():
            try:
                logger.remove(logger.add(Path(scratch, "check.log"), delay=True, **{name: value}))
            except (ValueError, TypeError) as exc:
                raise InvalidParams(f"RUNSPACE_LOG_{name.upper()}={value!r}: loguru cannot use it ({exc})") from None
