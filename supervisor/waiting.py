"""Why a queued job waits, and where it stands in the queue (daemon process): the `waiting_for`
and `queue_position` of its status. Read from the store, so on a shared store it counts every host."""

from __future__ import annotations

import time
from collections.abc import Callable

from supervisor.dependencies import DependencyView
from supervisor.models import JobRecord, JobState, rfc3339
from supervisor.queue_control import QueueControl
from supervisor.store import Store


def waiting_for(rec: JobRecord, store: Store, control: QueueControl, declared_limit: int | None,
                key_param: str | None, shows: Callable[[str], bool]) -> str:
    """The first reason that holds, in the order the scheduler applies them. `shows(job_id)`:
    whether whoever asks may see that job (keys are shared between users, their holders' ids are not)."""
    if control.holds(rec.job):
        return "paused"
    pending = DependencyView(store).waiting_for(rec) if rec.after_ids else None
    if pending is not None:
        return f"after {pending}"
    if rec.not_before > time.time():
        return f"not before {rfc3339(rec.not_before)}"
    running_of_type, holder = store.running_like(rec.job, rec.concurrency_key)
    if rec.concurrency_key is not None and holder is not None:
        held_by = holder if shows(holder) else "another user's job"
        return f"key {key_param or 'key'}={rec.concurrency_key} held by {held_by}"
    limit = control.limit_of(rec.job, declared_limit)
    if limit and running_of_type >= limit:
        return f"type concurrency {running_of_type}/{limit}"
    return "slot"  # no free slot yet, or the next dispatch takes it


def explain(rec: JobRecord, store: Store, control: QueueControl, declared_limit: int | None,
            key_param: str | None, shows: Callable[[str], bool]) -> tuple[str, int] | None:
    """(waiting_for, queue_position) of a queued job; None for any other."""
    if rec.state != JobState.QUEUED:
        return None
    return waiting_for(rec, store, control, declared_limit, key_param, shows), store.queue_position(rec)
