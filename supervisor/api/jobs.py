"""Routes for single jobs: submit, status, list, wait, cancel, log."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BeforeValidator

from supervisor.api.body import json_body, json_body_schema
from supervisor.api.deps import CallerDep, CursorQuery, DaemonDep, OffsetQuery
from supervisor.api.state import DaemonState
from supervisor.auth import Caller
from supervisor.batches import refuse_joining_a_batch
from supervisor.dependencies import check_after
from supervisor.durations import parse_duration
from supervisor.errors import Conflict, Draining, FieldError, InvalidParams, NotFound
from supervisor.exec_policy import check_restart
from supervisor.ids import is_job_id
from supervisor.logs import job_log_path, read_from
from supervisor.models import JobRecord, JobState, JobStatus
from supervisor.retention import DONE_STATES, purge, remove_job
from supervisor.store import JobFilter
from supervisor.submit import NAME_PATTERN, SubmitRequest, build_record, request_hash

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait=(\d+(?:\.\d+)?)")
_FOLLOW_POLL = 0.2


def _duration(value: object) -> object:
    return parse_duration(value) if isinstance(value, str) else value  # its ValueError names the forms


# `older_than` as the CLI and the settings write durations (`90`, `10m`, `7d`, `30 days`), not only seconds.
OlderThanQuery = Annotated[float, BeforeValidator(_duration), Query(
    ge=0, description="Only jobs that ended at least this long ago: seconds, or 10m, 7d, 30 days.")]


def status_response(rec: JobRecord, status_code: int | None = None,
                    asked: tuple[DaemonState, Caller] | None = None) -> JSONResponse:
    """The status object; a queued job's says why it waits when `asked` names the daemon and the caller."""
    code = status_code or (200 if rec.state.done else 202)
    status = JobStatus.of(rec)
    waiting = None
    if asked is not None:
        daemon, caller = asked
        waiting = daemon.scheduler.why_waiting(rec, lambda job_id: caller.may_see_id(daemon.store, job_id))
    if waiting is not None:
        status.waiting_for, status.queue_position = waiting
    return JSONResponse(status.model_dump(mode="json"), status_code=code, headers={"Location": rec.location})


def load_job(daemon: DaemonDep, caller: Caller, job_id: str) -> JobRecord:
    rec = daemon.store.get(job_id) if is_job_id(job_id) else None
    return caller.check_sees(rec, job_id)


def wait_seconds(body: float | None, query: float | None, prefer: str | None, cap: float) -> float:
    seconds = body if body is not None else query
    if seconds is None and prefer:
        match = _PREFER_WAIT.search(prefer)
        seconds = float(match.group(1)) if match else None
    return min(seconds or 0.0, cap)


def _idempotent_match(daemon: DaemonDep, caller: Caller, req: SubmitRequest, key: str) -> JobRecord | None:
    existing = daemon.store.find_idempotent(caller.name, key)
    if existing is not None and existing.request_hash != request_hash(req.job, req.params):
        raise Conflict(f"idempotency key {key!r} was already used for a different request (job {existing.id})")
    return existing


def _one_idempotency_key(body: str | None, header: str | None) -> str | None:
    if body is not None and header is not None and body != header:
        raise InvalidParams("the body's idempotency_key and the Idempotency-Key header differ; send one of them",
                            [FieldError(["header", "Idempotency-Key"], f"{header!r} is not the body's {body!r}")])
    return body or header


@router.post("", status_code=202, response_model=JobStatus, responses={200: {"model": JobStatus}},
             openapi_extra=json_body_schema(SubmitRequest))
async def submit_job(
    req: Annotated[SubmitRequest, Depends(json_body(SubmitRequest))],
    daemon: DaemonDep,
    caller: CallerDep,
    wait: Annotated[float | None, Query(ge=0, description="Seconds to wait for the result.")] = None,
    prefer: Annotated[str | None, Header(description="`wait=S` asks to wait for the result.")] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", pattern=NAME_PATTERN)] = None,
) -> JSONResponse:
    if daemon.draining:
        raise Draining("the daemon is shutting down and accepts no new jobs; retry when it is back")
    req.idempotency_key = _one_idempotency_key(req.idempotency_key, idempotency_key)
    if req.batch_id is not None:
        refuse_joining_a_batch(daemon.store, caller.name, req.batch_id)
    rec = _idempotent_match(daemon, caller, req, req.idempotency_key) if req.idempotency_key else None
    if rec is None:
        check_after(daemon.store, caller, req.after, ["after"])
        rec = build_record(daemon.registry, req, caller.name)
        daemon.scheduler.submit([rec], capped=not caller.admin)
    seconds = wait_seconds(req.wait, wait, prefer, daemon.settings.max_wait)
    if seconds > 0 and not rec.state.done:
        await daemon.scheduler.wait_done(rec.id, seconds)
        rec = daemon.store.get(rec.id) or rec
    response = status_response(rec, 200 if rec.state.done else 202, (daemon, caller))  # a replay of a done job: 200
    if prefer and seconds > 0 and req.wait is None and wait is None:
        response.headers["Preference-Applied"] = f"wait={seconds:g}"  # RFC 7240
    return response


@router.get("", response_model=dict)
async def list_jobs(
    daemon: DaemonDep,
    caller: CallerDep,
    state: JobState | None = None,
    job: str | None = None,
    batch_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: CursorQuery = None,
) -> dict[str, object]:
    flt = JobFilter(requestor=None if caller.admin else caller.name, state=state, job=job, batch_id=batch_id)
    records, next_cursor = daemon.store.list(flt, limit, int(cursor) if cursor else None)
    return {
        "items": [JobStatus.of(r).model_dump(mode="json") for r in records],
        "next_cursor": str(next_cursor) if next_cursor is not None else None,
    }


@router.delete("", response_model=dict)
async def clean_jobs(
    daemon: DaemonDep,
    caller: CallerDep,
    state: Annotated[list[JobState] | None, Query(description="Only ended jobs in these states (default: all).")] = None,
    older_than: OlderThanQuery = 0.0,
) -> dict[str, int]:
    """Remove your ended jobs (admins: everyone's) with their logs and results."""
    running = [s for s in state or [] if not s.done]
    if running:
        raise InvalidParams("only ended jobs can be removed",
                            [FieldError(["query", "state"], f"{s} is not an ended state") for s in running])
    removed = await purge(daemon.store, daemon.settings, time.time() - older_than, state or DONE_STATES,
                          None if caller.admin else caller.name)
    return {"removed": removed}


@router.get("/{job_id}", response_model=JobStatus)
async def get_job(job_id: str, daemon: DaemonDep, caller: CallerDep) -> JSONResponse:
    return status_response(load_job(daemon, caller, job_id), 200, (daemon, caller))


@router.get("/{job_id}/wait", response_model=JobStatus)
async def wait_job(
    job_id: str, daemon: DaemonDep, caller: CallerDep, timeout: Annotated[float, Query(ge=0)] = 30.0
) -> JSONResponse:
    rec = load_job(daemon, caller, job_id)
    if not rec.state.done:
        await daemon.scheduler.wait_done(job_id, min(timeout, daemon.settings.max_wait))
        rec = daemon.store.get(job_id) or rec
    return status_response(rec, 200, (daemon, caller))


@router.post("/{job_id}/cancel", response_model=JobStatus)
async def cancel_job(job_id: str, daemon: DaemonDep, caller: CallerDep) -> JSONResponse:
    rec = load_job(daemon, caller, job_id)
    if rec.state.done:
        raise Conflict(f"job {job_id} has already ended ({rec.state}); nothing to cancel")
    daemon.scheduler.cancel(rec)
    if daemon.scheduler.is_running(job_id):  # a queued job ended inside cancel(): no done event will come
        await daemon.scheduler.wait_done(job_id, daemon.scheduler.limits_for(rec).kill_grace + 2.0)
    return status_response(daemon.store.get(job_id) or rec)


@router.delete("/{job_id}", status_code=204)
async def remove_one(job_id: str, daemon: DaemonDep, caller: CallerDep) -> Response:
    """Remove an ended job: its record, log and result (409 while it is queued or running)."""
    await remove_job(daemon.store, daemon.settings, load_job(daemon, caller, job_id))
    return Response(status_code=204)


@router.post("/{job_id}/restart", status_code=202, response_model=JobStatus)
async def restart_job(job_id: str, daemon: DaemonDep, caller: CallerDep) -> JSONResponse:
    """A new job of the same type with the same params, `restarted_from` this one; the caller is its requestor."""
    old = load_job(daemon, caller, job_id)
    check_restart(old.job, old.requestor, caller.name)
    if daemon.draining:
        raise Draining("the daemon is shutting down and accepts no new jobs; retry when it is back")
    rec = build_record(daemon.registry, SubmitRequest(job=old.job, params=old.params, priority=old.priority),
                       caller.name)
    rec.restarted_from = old.id
    daemon.scheduler.submit([rec], capped=not caller.admin)
    return status_response(rec, 202)


@router.get("/{job_id}/log", response_class=PlainTextResponse, response_model=None)
async def job_log(
    job_id: str,
    daemon: DaemonDep,
    caller: CallerDep,
    offset: OffsetQuery = 0,
    follow: bool = False,
) -> PlainTextResponse | StreamingResponse:
    rec = load_job(daemon, caller, job_id)
    path = job_log_path(daemon.settings.logs, rec.id)
    if rec.processed_by not in (None, daemon.settings.host_id) and not path.exists():
        # Shared store: logs stay on the host that ran the job (README: "Several hosts on one PostgreSQL").
        raise NotFound(f"the log of job {rec.id} is kept on host {rec.processed_by}, which ran it; "
                       "read it through the runspace daemon on that host")
    if not follow:
        data = read_from(path, offset)
        return PlainTextResponse(data, headers={"X-Log-Offset": str(offset + len(data))})
    return StreamingResponse(_follow(daemon, rec.id, path, offset), media_type="text/plain")


async def _follow(daemon: DaemonDep, job_id: str, path, offset: int) -> AsyncIterator[bytes]:
    """Stream the log until the job has ended and everything it wrote has been sent."""
    while True:
        rec = daemon.store.get(job_id)
        data = read_from(path, offset)
        if data:
            offset += len(data)
            yield data
            continue
        if rec is None or rec.state.done:
            return
        await daemon.scheduler.wait_change(job_id, _FOLLOW_POLL)
