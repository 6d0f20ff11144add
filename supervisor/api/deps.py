"""Request-scoped helpers for the routes: the caller and what they see of the daemon."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from supervisor.api.state import DaemonState
from supervisor.auth import Caller


# Both are `async def` although they never await: FastAPI runs a plain `def` dependency in a
# worker thread, and two thread hops per request cost more than the whole route.


async def daemon_of(request: Request) -> DaemonState:
    return request.app.state.daemon


async def caller_of(request: Request) -> Caller:
    """Identified before the request was read (api/identify.py)."""
    return request.scope["state"]["caller"]


CallerDep = Annotated[Caller, Depends(caller_of)]
DaemonDep = Annotated[DaemonState, Depends(daemon_of)]
# Up to 18 digits: a cursor is a row's sequence number and must fit SQLite's 64-bit integer.
CursorQuery = Annotated[str | None, Query(pattern=r"^\d{1,18}$", description="`next_cursor` of the previous page.")]
# A byte offset into a log; beyond 2^63 the OS cannot even seek to it.
OffsetQuery = Annotated[int, Query(ge=0, le=2**63 - 1, description="Byte offset to read from (X-Log-Offset).")]
