"""The store interface shared by the SQLite (and later PostgreSQL) backends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from supervisor.models import JobRecord, JobState


@dataclass(frozen=True)
class JobFilter:
    requestor: str | None = None  # None: every requestor (admins)
    state: JobState | None = None
    job: str | None = None
    batch_id: str | None = None


class Store(Protocol):
    def insert(self, records: list[JobRecord]) -> None: ...

    def get(self, job_id: str) -> JobRecord | None: ...

    def update(self, rec: JobRecord, *fields: str) -> None: ...

    def list(self, flt: JobFilter, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]: ...

    def in_states(self, *states: JobState) -> list[JobRecord]: ...

    def find_idempotent(self, requestor: str, key: str) -> JobRecord | None: ...

    def count_by_state(self) -> dict[tuple[str, str], int]: ...

    def bump_counter(self, name: str) -> int: ...

    def close(self) -> None: ...
