"""Job states, the stored job record and the status object the API and CLI show."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    HUNG = "hung"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def done(self) -> bool:
        return self not in (JobState.QUEUED, JobState.RUNNING)


class KillReason(enum.StrEnum):
    TIMEOUT = "timeout"
    HUNG = "hung"
    CANCELLED = "cancelled"
    MEMORY = "memory"
    DAEMON_LOST = "daemon_lost"


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        when = datetime.fromtimestamp(ts, UTC)
    except (ValueError, OverflowError, OSError):  # beyond year 9999 (a not_before stored before it was checked)
        when = (datetime.max if ts > 0 else datetime.min).replace(tzinfo=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class JobRecord:
    """One job as the store keeps it. Times are epoch seconds."""

    id: str
    job: str
    params: dict[str, Any]
    requestor: str
    log_user: str
    state: JobState = JobState.QUEUED
    priority: int = 0
    concurrency_key: str | None = None
    batch_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    attempt: int = 0
    max_attempts: int = 1
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    killed_at: float | None = None
    progress: float | None = None
    total: float | None = None
    message: str | None = None
    pid: int | None = None
    pid_started: float | None = None
    cgroup: str | None = None  # the job's cgroup v2 path, when it has one: found again after a restart
    processed_by: str | None = None
    requested_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = field(default_factory=time.time)
    not_before: float = 0.0
    after_ids: list[str] = field(default_factory=list)  # starts once all of these succeeded
    restarted_from: str | None = None
    seq: int | None = None

    @property
    def location(self) -> str:
        return f"/v1/jobs/{self.id}"


class JobError(BaseModel):
    type: str
    message: str


class CallbackPayload(BaseModel):
    """The params a callback job receives. A callback type may use this model as its params model.

    Here, not in supervisor.batches: a callback's job module is preloaded by the fork server,
    and importing the daemon's batch code would put its store, loguru and asyncio into every
    forked job (4 MB more to copy and tear down per job)."""

    success: bool
    errors: list[JobError] = Field(default_factory=list)
    original_input: dict[str, Any]
    output: Any = None
    job_id: str
    batch_id: str


class JobStatus(BaseModel):
    """The status object of CONTRACT §5."""

    id: str
    job: str
    params: dict[str, Any]
    state: JobState
    done: bool
    cancelled: bool
    succeeded: bool
    result: Any = None
    error: JobError | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    killed_at: str | None = None
    progress: int | float | None = None
    total: int | float | None = None
    percent_complete: float | None = None
    message: str | None = None
    requestor: str
    log_user: str
    batch_id: str | None = None
    priority: int = 0
    attempt: int
    restarted_from: str | None = None
    after: list[str] = Field(default_factory=list)
    not_before: str | None = None
    waiting_for: str | None = None  # queued only: why it has not started (supervisor/waiting.py)
    queue_position: int | None = None
    pid: int | None = None
    processed_by: str | None = None
    requested_at: str
    started_at: str | None = None
    finished_at: str | None = None
    updated_at: str
    location: str

    @classmethod
    def of(cls, rec: JobRecord) -> JobStatus:
        percent = None
        if rec.total:
            percent = round((rec.progress or 0) / rec.total * 100.0, 1)
            # 1e307 of 1e-307 is no percentage; 12 of 10 (a job that overshoots its estimate) is 100.
            percent = min(max(percent, 0.0), 100.0) if math.isfinite(percent) else None
        error = JobError(type=rec.error_type, message=rec.error_message or "") if rec.error_type else None
        return cls(
            id=rec.id,
            job=rec.job,
            params=rec.params,
            state=rec.state,
            done=rec.state.done,
            cancelled=rec.state == JobState.CANCELLED,
            succeeded=rec.state == JobState.SUCCEEDED,
            result=rec.result,
            error=error,
            exit_code=rec.exit_code,
            signal=rec.signal,
            reason=rec.reason,
            killed_at=rfc3339(rec.killed_at),
            progress=_whole(rec.progress),
            total=_whole(rec.total),
            percent_complete=percent,
            message=rec.message,
            requestor=rec.requestor,
            log_user=rec.log_user,
            batch_id=rec.batch_id,
            priority=rec.priority,
            attempt=rec.attempt,
            restarted_from=rec.restarted_from,
            after=rec.after_ids,
            not_before=rfc3339(rec.not_before) if rec.not_before and rec.state == JobState.QUEUED else None,
            pid=rec.pid,
            processed_by=rec.processed_by,
            requested_at=rfc3339(rec.requested_at) or "",
            started_at=rfc3339(rec.started_at),
            finished_at=rfc3339(rec.finished_at),
            updated_at=rfc3339(rec.updated_at) or "",
            location=rec.location,
        )


def _whole(value: float | None) -> int | float | None:
    """3, not 3.0: the store keeps progress as a float, the job reported an int (up to 2^53,
    beyond which clients that read JSON numbers as doubles or int64 would lose or overflow it)."""
    return int(value) if isinstance(value, float) and value.is_integer() and abs(value) < 2**53 else value
