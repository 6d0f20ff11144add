"""The FastAPI application: routes, problem+json errors, OpenAPI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI

from supervisor.api import jobs, meta, problems

if TYPE_CHECKING:
    from supervisor.daemon import Daemon


def create_app(daemon: Daemon) -> FastAPI:
    app = FastAPI(
        title="runspace",
        version="0.1.0",
        description="Submit, follow and control supervised jobs over the daemon's Unix socket.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.daemon = daemon
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(meta.router)
    return app
