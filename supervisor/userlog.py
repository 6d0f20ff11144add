"""The daemon's side of the unified per-user logs: lifecycle events, rotated by loguru."""

from __future__ import annotations

import tempfile
from pathlib import Path

from loguru import logger

from supervisor.errors import InvalidParams
from supervisor.logs import user_line, user_log_path
from supervisor.models import JobRecord


class UserLog:
    """One loguru file sink per user, added on first use. Jobs append to the same files."""

    def __init__(self, log_dir: Path, rotation: str, retention: str) -> None:
        self._dir = log_dir
        self._rotation = rotation
        self._retention = retention
        self._sinks: set[str] = set()
        _check_sink_options(rotation=rotation, retention=retention)
        (log_dir / "users").mkdir(parents=True, exist_ok=True)
        (log_dir / "jobs").mkdir(parents=True, exist_ok=True)

    def event(self, rec: JobRecord, text: str) -> None:
        user = rec.log_user
        if user not in self._sinks:
            self._add_sink(user)
        logger.bind(user_log=user).info(user_line(rec.id, rec.job, text).rstrip("\n"))

    def _add_sink(self, user: str) -> None:
        logger.add(
            user_log_path(self._dir, user),
            format="{message}",
            filter=lambda record, user=user: record["extra"].get("user_log") == user,
            rotation=self._rotation,
            retention=self._retention,
            catch=True,
        )
        self._sinks.add(user)


def _check_sink_options(**options: str) -> None:
    """loguru parses rotation and retention only when a sink is added, at a user's first line,
    which would fail a submission after its job was stored: parse them now, at daemon start.
    In a scratch dir: retention deletes the files beside the sink that match its name."""
    with tempfile.TemporaryDirectory() as scratch:
        for name, value in options.items():
            try:
                logger.remove(logger.add(Path(scratch, "check.log"), delay=True, **{name: value}))
            except (ValueError, TypeError) as exc:
                raise InvalidParams(f"RUNSPACE_LOG_{name.upper()}={value!r}: loguru cannot use it ({exc})") from None
