"""The store interface shared by the SQLite and PostgreSQL backends (daemon process)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from supervisor.models import JobRecord, JobState


@dataclass
class BatchRecord:
    """One batch as the store keeps it; its items are the jobs carrying its id as batch_id."""

    id: str
    job: str
    requestor: str
    size: int
    request_hash: str
    callback_job: str | None = None
    created_at: float = 0.0


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

    # -- batches (the items themselves are ordinary jobs) --

    def insert_batch(self, batch: BatchRecord) -> bool: ...  # False: the id is taken

    def get_batch(self, batch_id: str, requestor: str) -> BatchRecord | None: ...

    def delete_batch(self, batch_id: str, requestor: str) -> None: ...

    def delete_empty_batches(self, created_before: float | None = None) -> int: ...

    def batch_counts(self, batch: BatchRecord) -> dict[str, int]: ...

    def batch_items(self, batch: BatchRecord, limit: int, cursor: int | None) -> tuple[list[JobRecord], int | None]: ...

    def callback_counts(self, batch: BatchRecord, key_prefix: str) -> dict[str, int]: ...

    def items_missing_callback(self, key_prefix: str) -> list[JobRecord]: ...

    # -- removal and queue control --

    def finished_ids(self, finished_before: float, states: list[JobState], requestor: str | None,
                     limit: int) -> list[str]: ...

    def callback_item(self, rec: JobRecord) -> str | None: ...

    def states_of(self, ids: list[str]) -> dict[str, tuple[str, str]]: ...  # id -> (state, requestor)

    def dependents_of(self, job_id: str) -> list[JobRecord]: ...  # queued jobs with job_id in after_ids

    def running_like(self, job: str, key: str | None) -> tuple[int, str | None]: ...  # (running, key holder)

    def queue_position(self, rec: JobRecord) -> int: ...

    def delete_jobs(self, ids: list[str]) -> None: ...

    def compact(self) -> None: ...  # after a large removal: disk use back to what the rows need

    def queue_control(self) -> dict[str, Any]: ...

    # Read, change and write in one transaction; the value written.
    def change_queue_control(self, change: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]: ...

    def close(self) -> None: ...
