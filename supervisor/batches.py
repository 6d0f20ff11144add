"""Batches: validate every item before anything is queued, create the item jobs, and queue
one callback job per item when it ends — exactly once, even across daemon restarts.

Exactly once: a callback job carries the idempotency key `callback/<item id>` under the
batch's requestor, and the store's unique index on (requestor, idempotency_key) makes its
insert the single record that "the callback was queued". Items that ended while no callback
was queued (a crash between the two commits) are found again by `recover()` at start-up.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from loguru import logger
from pydantic import BaseModel, ConfigDict, Field

from supervisor.errors import (
    Conflict, FieldError, InvalidParams, RunspaceError, StoreUnavailable, message_with_input,
)
from supervisor.ids import new_job_id
from supervisor.models import CallbackPayload, JobError, JobRecord, JobState, rfc3339
from supervisor.registry import Registry
from supervisor.store.base import BatchRecord, Store
from supervisor.store.sql import CALLBACK_PREFIX
from supervisor.submit import NAME_PATTERN, Priority, StartConditions, SubmitRequest, build_record

if TYPE_CHECKING:
    from supervisor.scheduler import Scheduler
    from supervisor.userlog import UserLog

CALLBACK_KEY_PREFIX = CALLBACK_PREFIX  # the store's queries find a callback by it
MAX_ITEMS = 100_000
_MAX_REPORTED_ERRORS = 1000


class CallbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    job: str = Field(description="Job type run once per ended item, with a CallbackPayload as params.")


class BatchRequest(StartConditions):
    """`after` and `not_before` apply to every item (not to the callbacks)."""

    model_config = ConfigDict(extra="forbid")

    job: str = Field(description="Job type of every item.")
    # Any, checked per item in validate_items: one non-object item must not hide the other bad items.
    items: list[Any] = Field(min_length=1, max_length=MAX_ITEMS, description="One params object per item.",
                             json_schema_extra={"items": {"type": "object"}})
    callback: CallbackSpec | None = None
    batch_id: str | None = Field(None, pattern=NAME_PATTERN, description="Your id for the batch (default: generated).")
    priority: Priority | None = Field(None, description="Priority of every item; default from the job type.")


def batch_request_hash(req: BatchRequest) -> str:
    body = [req.job, req.items, req.callback.job if req.callback else None, req.priority]
    if req.after or req.not_before:  # only then: batches stored before these fields existed keep their hash
        body += [req.after, req.not_before.timestamp() if req.not_before else None]
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def callback_payload(item: JobRecord) -> CallbackPayload:
    errors = [JobError(type=item.error_type, message=item.error_message or "")] if item.error_type else []
    if item.state != JobState.SUCCEEDED and not errors:
        errors = [JobError(type=str(item.state), message=f"the job ended {item.state}")]
    return CallbackPayload(
        success=item.state == JobState.SUCCEEDED,
        errors=errors,
        original_input=item.params,
        output=item.result,
        job_id=item.id,
        batch_id=item.batch_id or "",
    )


def validate_items(registry: Registry, req: BatchRequest, batch_id: str, requestor: str) -> list[JobRecord]:
    """Every item, all errors at once (`items.<index>.<field>`); raises before anything is stored.

    Pure CPU and no shared state, so the API runs it in a worker thread.
    """
    registry.get(req.job)  # unknown item type: 404 before looking at items
    if req.callback is not None:
        check_callback_type(registry, req.callback.job)
    records, errors, bad = [], [], []
    for index, item in enumerate(req.items):
        if not isinstance(item, dict):
            bad.append(index)
            errors.append(FieldError(["items", index], message_with_input({"msg": "must be an object of params",
                                                                            "input": item})))
            continue
        sub = SubmitRequest(job=req.job, params=item, priority=req.priority, batch_id=batch_id, after=req.after,
                            not_before=req.not_before)
        try:
            records.append(build_record(registry, sub, requestor, loc=("items", index)))
        except InvalidParams as exc:
            bad.append(index)
            errors.extend(FieldError(_item_loc(e.loc), e.msg) for e in exc.errors)
    if bad:
        shown = ", ".join(map(str, bad[:50])) + (", …" if len(bad) > 50 else "")
        raise InvalidParams(f"{len(bad)} of {len(req.items)} items are invalid (items {shown}); nothing was queued",
                            errors[:_MAX_REPORTED_ERRORS])
    return records


def _item_loc(loc: list[str | int]) -> list[str | int]:
    """build_record reports items.3.params.x; in a batch body the item *is* the params: items.3.x."""
    return [*loc[:2], *loc[3:]] if loc[2:3] == ["params"] else loc


def check_callback_type(registry: Registry, name: str) -> None:
    jt = registry.get(name)
    sample = CallbackPayload(success=True, original_input={}, job_id="0" * 20, batch_id="b").model_dump(mode="json")
    try:
        jt.validate(sample)
    except InvalidParams as exc:
        fields = "; ".join(f"{'.'.join(map(str, e.loc[1:]))}: {e.msg}" for e in exc.errors)
        raise InvalidParams(
            f"job type {name!r} cannot be a batch callback: its params must accept "
            f"{{success, errors, original_input, output, job_id, batch_id}} ({fields})",
            [FieldError(["callback", "job"], "params model does not accept the callback payload")],
        ) from None


class Batches:
    """Creates batches and queues their callbacks; owned by the daemon, hooked into the scheduler."""

    def __init__(self, store: Store, scheduler: Scheduler, registry: Callable[[], Registry], user_log: UserLog) -> None:
        self.store = store
        self.scheduler = scheduler
        self._registry = registry
        self._user_log = user_log

    @property
    def registry(self) -> Registry:
        return self._registry()

    def existing(self, req: BatchRequest, requestor: str) -> BatchRecord | None:
        """A resubmitted batch (same id, same body, same requestor) is the original one."""
        if req.batch_id is None:
            return None
        batch = self.store.get_batch(req.batch_id, requestor)  # ids are per requestor: others' do not count
        if batch is None:
            self._refuse_tagged_jobs(req.batch_id, requestor)
            return None
        if batch.request_hash != batch_request_hash(req):
            raise Conflict(f"batch id {req.batch_id!r} is already used by a different batch of yours")
        return batch

    def _refuse_tagged_jobs(self, batch_id: str, requestor: str) -> None:
        # One rule, both ways (refuse_joining_a_batch): jobs already tagged with this id by
        # POST /v1/jobs would count as the batch's items.
        tagged = self.store.batch_counts(BatchRecord(batch_id, "", requestor, 0, ""))
        if tagged:
            raise Conflict(f"batch id {batch_id!r} already tags {sum(tagged.values())} of your jobs "
                           "(submitted with POST /v1/jobs); choose another batch_id")

    def new_batch(self, req: BatchRequest, requestor: str) -> BatchRecord:
        return BatchRecord(
            id=req.batch_id or new_job_id(),
            job=req.job,
            requestor=requestor,
            size=len(req.items),
            request_hash=batch_request_hash(req),
            callback_job=req.callback.job if req.callback else None,
            created_at=time.time(),
        )

    async def create(self, batch: BatchRecord, records: list[JobRecord], capped: bool) -> None:
        """The batch row first, then the items in one transaction (the commit point of the batch).
        `capped`: a non-admin's batch counts against max_queued_per_user."""
        self.scheduler.check_room(records, capped)
        if not self.store.insert_batch(batch):
            raise Conflict(f"batch id {batch.id!r} is already used by a different batch of yours")
        try:
            self.scheduler.accept(records, capped)
        except BaseException:
            self.store.delete_batch(batch.id, batch.requestor)
            raise
        await self.scheduler.queue_stored(records)

    # -- callbacks ----------------------------------------------------------------------

    def on_item_finished(self, item: JobRecord) -> None:
        if item.batch_id is None:
            return
        try:
            batch = self.store.get_batch(item.batch_id, item.requestor)
        except StoreUnavailable:
            logger.warning("batch {}: the callback for item {} is queued once the job store recovers",
                           item.batch_id, item.id)
            return
        if batch is None or batch.callback_job is None:
            return
        self.queue_callback(batch, item)

    def queue_callback(self, batch: BatchRecord, item: JobRecord) -> None:
        key = CALLBACK_KEY_PREFIX + item.id
        if self.store.find_idempotent(batch.requestor, key) is not None:
            return  # already queued (before a restart, or by the recovery sweep)
        assert batch.callback_job is not None
        req = SubmitRequest(job=batch.callback_job, params=callback_payload(item).model_dump(mode="json"))
        req.idempotency_key = key  # set after validation: the key deliberately breaks NAME_PATTERN
        try:
            self.scheduler.submit([build_record(self.registry, req, batch.requestor)])
        except RunspaceError as exc:
            logger.error("batch {}: callback {} for item {} not queued: {}", batch.id, batch.callback_job,
                         item.id, exc)
            self._user_log.event(item, f"batch callback {batch.callback_job} not queued: {exc}")

    def recover(self) -> None:
        """At start-up: drop batches that never got their items; queue callbacks a crash skipped.
        Started on a full disk, the callbacks follow when the store recovers (the daemon hooks
        queue_missed_callbacks into the store guard)."""
        try:
            self._recover()
        except StoreUnavailable as exc:
            logger.warning("batch recovery postponed: {}", exc)

    def _recover(self) -> None:
        dropped = self.store.delete_empty_batches()
        if dropped:
            logger.warning("dropped {} batch(es) whose items were never stored", dropped)
        self.queue_missed_callbacks()

    def queue_missed_callbacks(self) -> None:
        """Callbacks of items that ended while they could not be queued (a crash, a store outage)."""
        for item in self.store.items_missing_callback(CALLBACK_KEY_PREFIX):
            batch = self.store.get_batch(item.batch_id or "", item.requestor)
            if batch is not None:
                logger.info("batch {}: queueing the missed callback for item {}", batch.id, item.id)
                self.queue_callback(batch, item)


def refuse_joining_a_batch(store: Store, requestor: str, batch_id: str) -> None:
    """POST /v1/jobs may tag a job with a batch_id, but not add it to a batch POST /v1/batches
    created: that batch's size, counts and `done` are its own items (Batches._refuse_tagged_jobs
    keeps the rule the other way round)."""
    batch = store.get_batch(batch_id, requestor)
    if batch is not None:
        raise Conflict(f"batch {batch_id!r} was created by POST /v1/batches and takes no more items; "
                       "create a new batch, or tag this job with another batch_id")


def batch_summary(store: Store, batch: BatchRecord) -> dict[str, Any]:
    counts = {str(state): 0 for state in JobState}
    counts.update(store.batch_counts(batch))
    ended = sum(n for state, n in counts.items() if JobState(state).done)
    return {
        "batch_id": batch.id,
        "job": batch.job,
        "requestor": batch.requestor,
        "size": batch.size,
        "callback": {"job": batch.callback_job} if batch.callback_job else None,
        "counts": counts,
        "ended": ended,
        "done": ended >= batch.size,
        "callbacks": store.callback_counts(batch, CALLBACK_KEY_PREFIX) if batch.callback_job else None,
        "created_at": rfc3339(batch.created_at),
        "location": f"/v1/batches/{batch.id}",
    }
