"""The unified per-user log over HTTP: read from an offset, or follow it like `tail -F`.

Who sees what: admins, and the user the log is named after, read every line; anyone else
reads only the lines of jobs they requested themselves (a line's second field is its job id).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated

import anyio
from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, StreamingResponse

from supervisor.api.deps import CallerDep, DaemonDep, OffsetQuery
from supervisor.auth import Caller
from supervisor.logs import READ_LIMIT, USER_LOG_PATTERN, check_log_user, read_from, user_log_path
from supervisor.store import Store

router = APIRouter(prefix="/v1/users", tags=["logs"])
_FOLLOW_POLL = 0.25


def line_filter(store: Store, caller: Caller, user: str) -> Callable[[bytes], bytes]:
    """Keeps whole lines the caller may see; remembers each job id's answer."""
    if caller.admin or caller.name == user:
        return lambda chunk: chunk
    allowed: dict[bytes, bool] = {}

    def may_see(job_id: bytes) -> bool:
        if job_id not in allowed:
            rec = store.get(job_id.decode("ascii", "replace"))
            allowed[job_id] = rec is not None and rec.requestor == caller.name
        return allowed[job_id]

    def keep(chunk: bytes) -> bytes:
        return b"".join(line for line in chunk.splitlines(keepends=True) if may_see(_job_id_of(line)))

    return keep


def _job_id_of(line: bytes) -> bytes:
    """Lines are `<time> <job id> <job type> <text>`."""
    fields = line.split(b" ", 2)
    return fields[1] if len(fields) > 1 else b""


def complete_lines(data: bytes) -> bytes:
    """Up to the last newline: a reader never hands out (or filters) half a line. A full read
    without any newline (a line longer than a read, written past runspace's own line split)
    is handed out as it is, so readers always progress."""
    end = data.rfind(b"\n")
    if end < 0 and len(data) >= READ_LIMIT:
        return data
    return data[: end + 1] if end >= 0 else b""


def _inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except FileNotFoundError:
        return None


async def follow_user_log(path: Path, offset: int, keep: Callable[[bytes], bytes]) -> AsyncIterator[bytes]:
    """Until the client goes away. When loguru rotates the file (new inode), start the new one at 0."""
    inode = _inode(path)
    while True:
        data = complete_lines(read_from(path, offset))
        if data:
            offset += len(data)
            shown = keep(data)
            if shown:
                yield shown
            continue
        await anyio.sleep(_FOLLOW_POLL)
        current = _inode(path)
        if current != inode:
            inode, offset = current, 0


@router.get("/{user}/log", response_class=PlainTextResponse, response_model=None)
async def user_log(
    user: Annotated[str, PathParam(description="A user (log) name: 1-64 letters, digits, '.', '_', '-' or '@', "
                                               "not starting with '.' or '-'.",
                                   json_schema_extra={"pattern": USER_LOG_PATTERN})],
    daemon: DaemonDep,
    caller: CallerDep,
    offset: OffsetQuery = 0,
    follow: bool = False,
) -> PlainTextResponse | StreamingResponse:
    """The user's unified log from byte `offset`; `X-Log-Offset` says where to continue."""
    check_log_user(user, ["path", "user"])
    path = user_log_path(daemon.settings.logs, user)
    keep = line_filter(daemon.store, caller, user)
    if follow:
        return StreamingResponse(follow_user_log(path, offset, keep), media_type="text/plain")
    data = complete_lines(read_from(path, offset))
    # Where to go on from is the log's size: another user's business (follow to read on).
    reader = caller.admin or caller.name == user
    return PlainTextResponse(keep(data), headers={"X-Log-Offset": str(offset + len(data))} if reader else None)
