"""Server-sent event streams that keep the pages live, fed by the daemon's follow machinery:
a job's log follows `GET /v1/jobs/{id}/log?follow=true`, status changes are signalled by the
user logs (supervisor/ui/hub.py), and a job's end by its log stream ending.

Progress reported without a message writes no log line; for it, the rows that are running are
read again, in one request, when no line came for a while (`_QUIET`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from supervisor.errors import NotFound, RunspaceError
from supervisor.ui.hub import job_id_of
from supervisor.ui.pages import job_filters, page_size, shows_requestor
from supervisor.ui.state import UiState, render_fragment, ui_state

_QUIET = 2.0  # seconds without a log line before running rows are read again
_GATHER = 0.2  # seconds to gather lines about the same jobs into one refresh
_KEEPALIVE = 15.0
# User logs one page follows at most: the daemon caps connections per uid (an admin's page may
# hold jobs of hundreds of users; rows of the others change on the periodic read of running jobs).
_MAX_FOLLOWED = 16


class Emit:
    """What a source sends: named events with JSON data, and `close()` to end the stream."""

    def __init__(self, send: MemoryObjectSendStream[bytes]) -> None:
        self._send = send

    async def __call__(self, event: str, data: Any) -> None:
        await self._send.send(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

    async def close(self) -> None:
        await self._send.send(b"")


Source = Callable[[Emit], Awaitable[None]]


class EventStream:
    """A `text/event-stream` answer whose sources run until the browser leaves or one closes it."""

    def __init__(self, *sources: Source) -> None:
        self.sources = sources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8")]})
        out, into = anyio.create_memory_object_stream[bytes](100)
        try:
            async with anyio.create_task_group() as tg:
                for source in self.sources:
                    tg.start_soon(_run, source, Emit(out))
                tg.start_soon(_until_disconnect, receive, tg.cancel_scope)
                tg.start_soon(_keepalive, out)
                await _pump(into, send)
                tg.cancel_scope.cancel()
        except OSError:  # the browser went away while we wrote
            return


async def _run(source: Source, emit: Emit) -> None:
    try:
        await source(emit)
    except RunspaceError as exc:  # the daemon refused or went away: the page says so, the stream ends
        await emit("problem", {"detail": exc.detail})
        await emit.close()


async def _pump(into: MemoryObjectReceiveStream[bytes], send: Send) -> None:
    async for chunk in into:
        if not chunk:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _until_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _keepalive(out: MemoryObjectSendStream[bytes]) -> None:
    while True:
        await anyio.sleep(_KEEPALIVE)
        await out.send(b": keepalive\n\n")


def _offset(request: Request) -> int:
    """Where the page's copy of a log ends (the page put it in the stream's URL)."""
    raw = request.query_params.get("offset", "")
    return int(raw) if raw.isdigit() else 0


# -- the jobs table ---------------------------------------------------------------------


async def jobs(request: Request) -> EventStream:
    """Rows of the page's jobs as they change; on the first page, new jobs that match its filters."""
    ui = ui_state(request)
    filters = job_filters(request)
    cursor = request.query_params.get("cursor")
    page = await ui.api.list_jobs(**filters, limit=page_size(request), cursor=cursor)
    rows = page["items"]
    table = _Table(ui, filters, accepts_new=cursor is None, show_requestor=shows_requestor(ui, rows))
    busiest = Counter(r["log_user"] for r in rows if not r["done"]).most_common(_MAX_FOLLOWED - 1)
    watched = {ui.user} | {user for user, _ in busiest}
    since = request.query_params.get("since", "")
    return EventStream(lambda emit: table.run(emit, rows, watched, since))


class _Table:
    def __init__(self, ui: UiState, filters: dict[str, str], accepts_new: bool, show_requestor: bool) -> None:
        self.ui = ui
        self.filters = filters
        self.accepts_new = accepts_new
        self.show_requestor = show_requestor
        self.shown: dict[str, str] = {}  # job id -> updated_at of the row the page has
        self.live: set[str] = set()  # rows not ended yet
        self.ignored: set[str] = set()  # new jobs this page's filters leave out: not asked about again

    async def run(self, emit: Emit, rows: list[dict[str, Any]], users: set[str], since: str) -> None:
        """`since`: when the page was rendered (RFC 3339, which sorts as text)."""
        async with self.ui.hub.lines(users) as lines:
            for row in rows:
                self.shown[row["id"]] = row["updated_at"]
                if not row["done"]:
                    self.live.add(row["id"])
                if row["updated_at"] >= since:  # changed between the page's rendering and this stream's start
                    await self.show(emit, row)
            while True:
                changed = await _gather(lines)
                if changed is None:
                    await self.catch_up(emit)
                for job_id in changed or ():
                    if job_id in self.shown or (self.accepts_new and job_id not in self.ignored):
                        try:
                            await self.show(emit, await self.ui.api.job(job_id))
                        except NotFound:  # removed meanwhile, or a line about a job we may not see
                            pass

    async def catch_up(self, emit: Emit) -> None:
        """Running rows, read again in one request: progress without a message writes no line."""
        if not self.live:
            return
        running = await self.ui.api.list_jobs(state="running", limit=1000)
        for status in running["items"]:
            if status["id"] in self.shown and status["updated_at"] != self.shown[status["id"]]:
                await self.show(emit, status)

    async def show(self, emit: Emit, status: dict[str, Any]) -> None:
        is_new = status["id"] not in self.shown
        if is_new and not self._matches(status):
            self.ignored.add(status["id"])
            return
        self.shown[status["id"]] = status["updated_at"]
        (self.live.discard if status["done"] else self.live.add)(status["id"])
        html = render_fragment(self.ui, "_row.html", job=status, show_requestor=self.show_requestor)
        await emit("row", {"id": status["id"], "html": html, "new": is_new})

    def _matches(self, status: dict[str, Any]) -> bool:
        return all(str(status.get(key)) == value for key, value in self.filters.items())


async def _gather(lines: MemoryObjectReceiveStream[str]) -> set[str] | None:
    """Job ids named by the lines that come within `_GATHER` of the first; None after `_QUIET` of none."""
    with anyio.move_on_after(_QUIET):
        first = await lines.receive()
        ids = {job_id_of(first)}
        with anyio.move_on_after(_GATHER):
            while True:
                ids.add(job_id_of(await lines.receive()))
        return {i for i in ids if i}
    return None


# -- one job --------------------------------------------------------------------------


async def job(request: Request) -> EventStream:
    """The job's log as it grows and its status box as it changes; ends once the job has."""
    ui = ui_state(request)
    job_id = request.path_params["job_id"]
    offset = _offset(request)
    status = await ui.api.job(job_id)
    box = _StatusBox(ui, status, can_restart=await ui.api.has("/v1/jobs/{job_id}/restart"))

    async def log(emit: Emit) -> None:
        try:
            async for text in ui.api.follow_job_log(job_id, offset):
                await emit("log", text)
        except NotFound:  # kept on the host that ran it: the status box still follows
            await box.until_done(emit)
        await box.refresh(emit)  # the log ends when the job has: its final status
        await emit("done", {"state": box.status["state"]})
        await emit.close()

    return EventStream(log, box.run)


class _StatusBox:
    def __init__(self, ui: UiState, status: dict[str, Any], can_restart: bool) -> None:
        self.ui = ui
        self.status = status
        self.can_restart = can_restart

    async def run(self, emit: Emit) -> None:
        await self.show(emit)  # it may have changed since the page was rendered
        async with self.ui.hub.lines({self.status["log_user"]}) as lines:
            while not self.status["done"]:
                with anyio.move_on_after(_QUIET):
                    while job_id_of(await lines.receive()) != self.status["id"]:
                        pass
                await self.refresh(emit)

    async def until_done(self, emit: Emit) -> None:
        while not self.status["done"]:
            await anyio.sleep(_QUIET)
            await self.refresh(emit)

    async def refresh(self, emit: Emit) -> None:
        status = await self.ui.api.job(self.status["id"])
        if status["updated_at"] == self.status["updated_at"] and status["state"] == self.status["state"]:
            return
        self.status = status
        await self.show(emit)

    async def show(self, emit: Emit) -> None:
        html = render_fragment(self.ui, "_status.html", job=self.status, can_restart=self.can_restart)
        await emit("status", {"html": html, "done": self.status["done"]})


# -- the user log ---------------------------------------------------------------------


async def user_log(request: Request) -> EventStream:
    ui = ui_state(request)
    user = request.query_params.get("user") or ui.user
    offset = _offset(request)

    async def follow(emit: Emit) -> None:
        async for text in ui.api.follow_user_log(user, offset):
            await emit("log", text)

    return EventStream(follow)
