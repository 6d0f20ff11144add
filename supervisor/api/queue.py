"""Route for the queue as a whole: its state (GET) and, for admins, pause/resume/parallel (PUT)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from supervisor.api.body import json_body, json_body_schema
from supervisor.api.deps import CallerDep, DaemonDep
from supervisor.errors import NotAllowed
from supervisor.queue_control import QueueControl, QueueState

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


@router.put("", response_model=QueueState, openapi_extra=json_body_schema(QueueControl))
async def put_queue(control: Annotated[QueueControl, Depends(json_body(QueueControl))], daemon: DaemonDep,
                    caller: CallerDep) -> QueueState:
    """Replace the queue settings (admins only); starts what may start now."""
    if not caller.admin:
        raise NotAllowed("only admins pause, resume or change the parallelism of the queue")
    control.check_types(set(daemon.registry.types))
    daemon.scheduler.set_control(control)
    return daemon.scheduler.queue_state()
