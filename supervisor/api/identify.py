"""Identify every caller before anything of its request is read (CONTRACT §12).

An ASGI middleware, outermost: a uid that may not use the daemon gets 403 (a TCP caller
without a valid token 401) for every path, `/openapi.json` included, before its body is
read or parsed; a connection over its uid's cap gets 429 and is closed. The caller is then
in `scope["state"]["caller"]` for the routes (api/deps.py).
"""

from __future__ import annotations

import pwd
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from supervisor.api.connections import Connection, ConnectionTable
from supervisor.api.problems import problem
from supervisor.api.tokens import TokenTable
from supervisor.auth import Caller, identify
from supervisor.errors import NotAuthenticated, RunspaceError
from supervisor.settings import Settings

_CACHE_SIZE = 256
_CACHE_SECONDS = 30.0  # how long a user's name, groups and admission are reused


class CallerCache:
    """Recent admissions per uid: a request costs no passwd/group lookup, and a lookup that
    fails for a moment (NSS, or no descriptor left) does not lock known users out. Refusals
    are not kept: one made during such a moment must not outlive it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._known: OrderedDict[int, tuple[float, Caller]] = OrderedDict()

    def caller(self, uid: int) -> Caller:
        now = time.monotonic()
        hit = self._known.get(uid)
        if hit is not None and now - hit[0] <= _CACHE_SECONDS:
            self._known.move_to_end(uid)
            return hit[1]
        caller = identify(uid, self._settings)  # raises NotAllowed
        self._known[uid] = (now, caller)
        self._known.move_to_end(uid)
        if len(self._known) > _CACHE_SIZE:
            self._known.popitem(last=False)
        return caller


class Identify:
    def __init__(self, app: ASGIApp, settings: Settings, tokens: TokenTable | None,
                 connections: ConnectionTable) -> None:
        self.app = app
        self._tokens = tokens
        self._callers = CallerCache(settings)
        self._connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            state["caller"] = self._identify(scope, state.get("connection"))
        except RunspaceError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
            if exc.status in (401, 403, 429):  # the body was never read: do not wait for the rest of it
                headers["Connection"] = "close"
            await problem(exc.status, exc.title, exc.detail, exc.slug, headers=headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _identify(self, scope: Scope, conn: Connection | None) -> Caller:
        """Unix socket: the peer's uid (SO_PEERCRED). TCP: the user its bearer token maps to."""
        if conn is None:
            raise NotAuthenticated("this listener cannot tell who is calling")
        if conn.refused is not None:
            raise conn.refused
        if conn.peer is not None:
            return self._callers.caller(conn.peer.uid)
        if conn.transport != "tcp" or self._tokens is None:
            raise NotAuthenticated("this listener cannot tell who is calling")
        authorization = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
        name = self._tokens.user_for(authorization)
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            raise NotAuthenticated(f"the token belongs to {name!r}, who is not a user on this host") from None
        caller = self._callers.caller(uid)
        self._connections.acquire(conn, uid)  # a TCP connection counts once its caller is known
        if conn.refused is not None:
            raise conn.refused
        return caller
