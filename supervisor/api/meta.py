"""Routes about the daemon itself: job types, health, metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, PlainTextResponse

from supervisor.api.deps import CallerDep, DaemonDep
from supervisor.auth import Caller
from supervisor.errors import StoreUnavailable
from supervisor.metrics import Gauges, render_metrics, render_own_metrics

router = APIRouter(tags=["daemon"])


@router.get("/v1/jobtypes")
async def job_types(
    daemon: DaemonDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Types per page, by name.")] = 1000,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page (a type's name).")] = None,
) -> dict[str, object]:
    registry = daemon.registry
    names = sorted(name for name in registry.types if cursor is None or name > cursor)
    page = names[:limit]
    return {
        "items": [registry.types[name].describe(daemon.settings) for name in page],
        "next_cursor": page[-1] if len(names) > limit else None,
        # The traceback shows the module's code and the daemon's paths: for admins, who fix modules.
        "broken": [{"module": str(b.path), "error": b.error, "traceback": b.traceback if caller.admin else None}
                   for b in registry.broken],
    }


@router.get("/healthz", responses={503: {"description": "The job store is unavailable (named in `problem`)."}})
async def healthz(daemon: DaemonDep, caller: CallerDep) -> JSONResponse:
    """Admins see the daemon's counts; anyone else their own jobs' (CONTRACT §12)."""
    problem = daemon.store.problem()
    body = {
        "status": "degraded" if problem else "draining" if daemon.draining else "ok",
        "host_id": daemon.settings.host_id,
        "running": _running(daemon, caller),
        "queued": _queued(daemon, caller),
        "job_types": len(daemon.registry.types),
        "broken_modules": len(daemon.registry.broken),
        "fork_server": daemon.fork_server_state(),
        "command_shim": daemon.scheduler.command_shim(),
    }
    if problem is None:
        return JSONResponse(body)
    body |= {"problem": problem, "kept_updates": daemon.store.kept_updates() if caller.admin else None}
    fault = daemon.store.fault
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(fault.retry_after if fault else 5)})


def _running(daemon: DaemonDep, caller: Caller) -> int:
    return daemon.scheduler.running_count(None if caller.admin else caller.name)


def _queued(daemon: DaemonDep, caller: Caller) -> int | None:
    try:
        return daemon.scheduler.queued_count(None if caller.admin else caller.name)
    except StoreUnavailable:  # a shared queue is counted in the database
        return None


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(daemon: DaemonDep, caller: CallerDep) -> PlainTextResponse:
    """Admins get every family; anyone else their own queued and running jobs."""
    text = render_metrics(_gauges(daemon), daemon.scheduler.stats()) if caller.admin else \
        render_own_metrics(_queued(daemon, caller), _running(daemon, caller))
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")


def _gauges(daemon: DaemonDep) -> Gauges:
    """Every job's: for admins."""
    try:
        queued = daemon.scheduler.queued_count()
    except StoreUnavailable:  # a shared queue is counted in the database
        queued = 0
    return Gauges(jobs=daemon.store.count_by_state(), queued=queued, running=daemon.scheduler.running_count(),
                  daemon_starts=daemon.starts)
