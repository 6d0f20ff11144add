"""The dashboard's Starlette application: routes, static files, errors, the guard around it all."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from supervisor.errors import DaemonUnreachable, RunspaceError
from supervisor.ui import actions, events, pages
from supervisor.ui.daemon_api import DaemonApi
from supervisor.ui.guard import Guard, Secrets
from supervisor.ui.hub import UserLogHub
from supervisor.ui.state import UiState, make_templates, render

STATIC = Path(__file__).resolve().parent / "static"


async def _daemon_error(request: Request, exc: Exception) -> Response:
    """What the daemon refused (404, 403, 409, ...) as a page that says so, in its words."""
    assert isinstance(exc, RunspaceError)
    status = 502 if isinstance(exc, DaemonUnreachable) else exc.status
    return render(request, "error.html", {"error": exc, "status": status}, status_code=status)


def create_app(socket_path: Path, user: str, keys: Secrets, port: int) -> Guard:
    api = DaemonApi(socket_path)
    state = UiState(api, user, keys, port, make_templates())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            state.hub = UserLogHub(api, tg)
            yield
            tg.cancel_scope.cancel()
        await api.close()

    routes = [
        Route("/", pages.jobs, name="jobs"),
        Route("/jobs/{job_id}", pages.job, name="job"),
        Route("/jobs/{job_id}/cancel", actions.cancel, methods=["POST"]),
        Route("/jobs/{job_id}/restart", actions.restart, methods=["POST"]),
        Route("/batches", pages.batches),
        Route("/batches/{batch_id}", pages.batch, name="batch"),
        Route("/log", pages.user_log),
        Route("/types", pages.job_types),
        Route("/types/{name}", actions.submit, methods=["POST"]),
        Route("/queue", pages.queue),
        Route("/events/jobs", events.jobs, name="events_jobs"),
        Route("/events/jobs/{job_id}", events.job, name="events_job"),
        Route("/events/log", events.user_log, name="events_log"),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={RunspaceError: _daemon_error})
    app.state.ui = state
    return Guard(app, keys, port)
