"""The daemon's side of the unified per-user logs: lifecycle events, rotated by loguru."""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from supervisor.logs import user_line, user_log_path
from supervisor.models import JobRecord


class UserLog:
    """One loguru file sink per user, added on first use. Jobs append to the same files."""

    def __init__(self, log_dir: Path, rotation: str, retention: str) -> None:
        self._dir = log_dir
        self._rotation = rotation
        self._retention = retention
        self._sinks: set[str] = set()
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
