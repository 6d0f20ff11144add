"""Route for the queue as a whole: its state (GET) and, for admins, pause/resume/parallel (PUT, PATCH)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from supervisor.api.body import json_body, json_body_schema
from supervisor.api.deps import CallerDep, DaemonDep
from supervisor.auth import Caller
from supervisor.errors import NotAllowed
from supervisor.queue_control import QueueChange, QueueControl, QueueState

router = APIRouter(prefix="/v1/queue", tags=["queue"])


@router.get("", response_model=QueueState)
async def get_queue(daemon: DaemonDep, caller: CallerDep) -> QueueState:
    """The queue settings, and how many jobs run and wait: everyone's for admins, else the caller's
    own (as /healthz and /metrics count: other users' activity is theirs)."""
    state = daemon.scheduler.queue_state()
    if not caller.admin:
        state.running = daemon.scheduler.running_count(caller.name)
        state.queued = daemon.scheduler.queued_count(caller.name)
    return state


def _check_admin(caller: Caller) -> None:
    if not caller.admin:
        raise NotAllowed("only admins pause, resume or change the parallelism of the queue")


@router.put("", response_model=QueueState, openapi_extra=json_body_schema(QueueControl))
async def put_queue(control: Annotated[QueueControl, Depends(json_body(QueueControl))], daemon: DaemonDep,
                    caller: CallerDep) -> QueueState:
    """Set the queue settings the body names (admins only; the others keep their value, so a
    whole document replaces them all); starts what may start now."""
    _check_admin(caller)
    control.check_types(set(daemon.registry.types))
    daemon.scheduler.change_control(lambda current: current.model_copy(update=control.given()))
    return daemon.scheduler.queue_state()


@router.patch("", response_model=QueueState, openapi_extra=json_body_schema(QueueChange))
async def patch_queue(change: Annotated[QueueChange, Depends(json_body(QueueChange))], daemon: DaemonDep,
                      caller: CallerDep) -> QueueState:
    """Pause or resume one type or the queue, set one concurrency (admins only): each change is
    applied to the settings as they are then, so changes made at the same time all hold."""
    _check_admin(caller)
    change.check_types(set(daemon.registry.types))
    daemon.scheduler.change_control(change.applied_to)
    return daemon.scheduler.queue_state()
