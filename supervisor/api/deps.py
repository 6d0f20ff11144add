"""Request-scoped helpers for the routes: the caller and the daemon's services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from supervisor.auth import Caller, identify

if TYPE_CHECKING:
    from supervisor.daemon import Daemon


def daemon_of(request: Request) -> Daemon:
    return request.app.state.daemon


def caller_of(request: Request) -> Caller:
    peer = request.scope.get("state", {}).get("peer")
    return identify(peer.uid if peer else None, daemon_of(request).settings)


CallerDep = Annotated[Caller, Depends(caller_of)]
DaemonDep = Annotated["Daemon", Depends(daemon_of)]
