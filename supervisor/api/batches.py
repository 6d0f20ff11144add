"""Routes for batches: submit many items of one job type at once, and follow them."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from supervisor.api.body import json_body, json_body_schema
from supervisor.api.deps import CallerDep, CursorQuery, DaemonDep
from supervisor.batches import Batches, BatchRequest, batch_summary, validate_items
from supervisor.dependencies import check_after
from supervisor.errors import Draining, NotFound
from supervisor.models import JobStatus
from supervisor.store.base import BatchRecord

router = APIRouter(prefix="/v1/batches", tags=["batches"])


async def batches_of(daemon: DaemonDep) -> Batches:
    return daemon.batches


BatchesDep = Annotated[Batches, Depends(batches_of)]


def _resubmitted(batches: Batches, batch: BatchRecord) -> JSONResponse:
    items, _ = batches.store.batch_items(batch, batch.size, None)
    return _created(batch, [r.id for r in items], 200)


def _created(batch: BatchRecord, job_ids: list[str], status_code: int) -> JSONResponse:
    body = {
        "batch_id": batch.id,
        "job": batch.job,
        "size": batch.size,
        "callback": {"job": batch.callback_job} if batch.callback_job else None,
        "job_ids": job_ids,
        "location": f"/v1/batches/{batch.id}",
    }
    return JSONResponse(body, status_code=status_code, headers={"Location": body["location"]})


@router.post("", status_code=202, response_model=dict, openapi_extra=json_body_schema(BatchRequest))
async def submit_batch(
    req: Annotated[BatchRequest, Depends(json_body(BatchRequest))],
    daemon: DaemonDep,
    batches: BatchesDep,
    caller: CallerDep,
) -> JSONResponse:
    """Validate every item (one bad item: 400, nothing queued), then queue them all: 202.

    Resubmitting the same body with the same batch_id returns the original batch (200).
    """
    if daemon.draining:
        raise Draining("the daemon is shutting down and accepts no new jobs; retry when it is back")
    existing = batches.existing(req, caller.name)
    if existing is not None:
        return _resubmitted(batches, existing)
    check_after(daemon.store, caller, req.after, ["after"])
    batch = batches.new_batch(req, caller.name)
    # Validation is the costly part (10,000 pydantic validations): off the event loop, so
    # other requests are served meanwhile. Storing and queueing stay on the loop.
    records = await anyio.to_thread.run_sync(validate_items, batches.registry, req, batch.id, caller.name)
    existing = batches.existing(req, caller.name)  # the same batch may have arrived while we validated
    if existing is not None:
        return _resubmitted(batches, existing)
    await batches.create(batch, records, capped=not caller.admin)
    return _created(batch, [r.id for r in records], 202)


@router.get("/{batch_id}", response_model=dict)
async def get_batch(
    batch_id: str,
    daemon: DaemonDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=0, le=1000, description="Items per page (0: counts only).")] = 100,
    cursor: CursorQuery = None,
    requestor: Annotated[str | None, Query(description="Admins: whose batch (batch ids are per requestor; "
                                                       "default: your own).")] = None,
) -> dict[str, object]:
    """Counts per state, callback counts, and a page of the items in submission order."""
    owner = requestor if caller.admin and requestor else caller.name
    batch = daemon.store.get_batch(batch_id, owner)
    if batch is None:
        raise NotFound(f"no batch {batch_id}; jobs tagged with a batch_id by POST /v1/jobs are listed by "
                       f"GET /v1/jobs?batch_id={batch_id}")
    items, next_cursor = daemon.store.batch_items(batch, limit, int(cursor) if cursor else None)
    return {
        **batch_summary(daemon.store, batch),
        "items": [JobStatus.of(r).model_dump(mode="json") for r in items],
        "next_cursor": str(next_cursor) if next_cursor is not None else None,
    }
