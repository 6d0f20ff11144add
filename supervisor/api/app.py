"""The FastAPI application: routes, problem+json errors, OpenAPI."""

from __future__ import annotations

from fastapi import FastAPI

from supervisor.api import batches, jobs, meta, openapi, problems, queue, users
from supervisor.api.body_limit import BodyLimit
from supervisor.api.connections import ConnectionTable
from supervisor.api.identify import Identify
from supervisor.api.state import DaemonState
from supervisor.api.tokens import TokenTable


def create_app(daemon: DaemonState, tokens: TokenTable | None, connections: ConnectionTable) -> FastAPI:
    """Building the app starts nothing: start-up is Daemon.serve's, step by step."""
    app = FastAPI(
        title="runspace",
        version="0.1.0",
        description="Submit, follow and control supervised jobs over the daemon's Unix socket.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.daemon = daemon
    app.add_middleware(BodyLimit, max_bytes=daemon.settings.max_request_bytes)
    # Added last, so outermost: callers are known before anything of a request is read.
    app.add_middleware(Identify, settings=daemon.settings, tokens=tokens, connections=connections)
    problems.install(app)
    routers = [jobs.router, meta.router, batches.router, users.router, queue.router]
    for router in routers:
        app.include_router(router)
    openapi.install(app, routers)
    return app
