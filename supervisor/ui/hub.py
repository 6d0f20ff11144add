"""One follower of each user's log for the whole dashboard, shared by every open page.

A user log line (`<time> <job id> <type> <text>`) is written when a job is queued, starts,
reports progress with a message, logs with ctx.log, and ends: the pages' signal that a job
changed. One follow stream per user, however many tabs are open, keeps the dashboard's
connections to the daemon few (the daemon caps connections per uid).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from supervisor.errors import RunspaceError
from supervisor.ui.daemon_api import DaemonApi, read_tail

_BACKLOG = 1000  # lines a slow page may fall behind by; beyond that it misses some (its periodic refresh catches up)
_RETRY = 2.0  # seconds before following a user's log again after the daemon went away
_LINGER = 60.0  # seconds a follower outlives its last page


@dataclass
class _Follower:
    scope: anyio.CancelScope
    subscribers: set[MemoryObjectSendStream[str]] = field(default_factory=set)


class UserLogHub:
    def __init__(self, api: DaemonApi, tg: TaskGroup) -> None:
        self._api = api
        self._tg = tg  # owned by the app's lifespan: followers end with the server
        self._followers: dict[str, _Follower] = {}

    @asynccontextmanager
    async def lines(self, users: set[str]) -> AsyncIterator[MemoryObjectReceiveStream[str]]:
        """New lines of these users' logs while the block runs."""
        send, receive = anyio.create_memory_object_stream[str](_BACKLOG)
        for user in users:
            self._follower(user).subscribers.add(send)
        try:
            yield receive
        finally:
            for user in users:
                self._leave(user, send)
            send.close()
            receive.close()

    def _follower(self, user: str) -> _Follower:
        if user not in self._followers:
            follower = _Follower(anyio.CancelScope())
            self._followers[user] = follower
            self._tg.start_soon(self._follow, user, follower)
        return self._followers[user]

    def _leave(self, user: str, send: MemoryObjectSendStream[str]) -> None:
        follower = self._followers.get(user)
        if follower is None:
            return
        follower.subscribers.discard(send)
        if not follower.subscribers:
            self._tg.start_soon(self._retire, user, follower)

    async def _retire(self, user: str, follower: _Follower) -> None:
        """Stop following once no page has wanted the log for a while: going from the jobs page to
        a job and back should not start over (a new follower first reads to the log's end)."""
        await anyio.sleep(_LINGER)
        if not follower.subscribers and self._followers.get(user) is follower:
            follower.scope.cancel()
            del self._followers[user]

    async def _follow(self, user: str, follower: _Follower) -> None:
        with follower.scope:
            while True:
                try:
                    # From where the log ends now: new lines are what the pages want.
                    _, offset, _ = await read_tail(partial(self._api.user_log, user), 0)
                    pending = ""
                    async for text in self._api.follow_user_log(user, offset):
                        *complete, pending = (pending + text).split("\n")
                        for line in complete:
                            for send in list(follower.subscribers):
                                try:
                                    send.send_nowait(line)
                                except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                                    pass
                except RunspaceError as exc:
                    logger.debug(f"following the log of {user}: {exc}")
                except Exception:  # noqa: BLE001 - a follower's failure must not end the server's task group
                    logger.exception(f"following the log of {user}")
                await anyio.sleep(_RETRY)

def job_id_of(line: str) -> str | None:
    fields = line.split(" ", 2)
    return fields[1] if len(fields) > 2 else None
