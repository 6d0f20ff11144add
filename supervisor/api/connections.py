"""Open connections per caller uid, capped (CONTRACT §12): one user's connections and log
follows cannot use up the daemon's descriptors or its event loop for everyone else; and the
per-connection rules that apply before any request is read (slot, idle timeout)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from supervisor.api.peer import PeerCred, read_peercred
from supervisor.errors import TooManyConnections

ROOT_UID = 0


@dataclass
class Connection:
    """One accepted connection: who is at the other end, and the slot it holds, if any."""

    peer: PeerCred | None
    transport: str  # "unix" or "tcp" (a bearer token names the caller)
    uid: int | None = None  # the uid whose slot it holds
    refused: TooManyConnections | None = None  # over the cap: its first request gets 429, then it closes


class ConnectionTable:
    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self._open: Counter[int] = Counter()

    def acquire(self, conn: Connection, uid: int) -> None:
        """Count `conn` against `uid` (once); over the cap, mark it refused instead."""
        if conn.uid is not None or conn.refused is not None:
            return
        if uid != ROOT_UID and self._open[uid] >= self.per_user:
            conn.refused = TooManyConnections(
                f"uid {uid} has {self._open[uid]} connections open and max_connections_per_user is "
                f"{self.per_user}; close some (log follows count too) or ask an admin to raise "
                "RUNSPACE_MAX_CONNECTIONS_PER_USER")
            return
        self._open[uid] += 1
        conn.uid = uid

    def release(self, conn: Connection) -> None:
        if conn.uid is not None:
            self._open[conn.uid] -= 1
            if self._open[conn.uid] <= 0:
                del self._open[conn.uid]
            conn.uid = None


class PeerCredProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus the connection (peer credentials, slot) in every
    request's `scope["state"]["connection"]`.

    uvicorn copies `app_state` into each request scope, so a per-connection copy carries
    the connection to the app without any global table.
    """

    def __init__(self, *args: Any, connections: ConnectionTable, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table = connections

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        peer = read_peercred(sock) if sock is not None else None
        # "tcp": the caller must prove who it is with a bearer token (api/identify.py).
        self.conn = Connection(peer, "unix" if peer is not None else "tcp")
        if peer is not None:
            self._table.acquire(self.conn, peer.uid)
        self.app_state = {**self.app_state, "connection": self.conn}
        # uvicorn arms its keep-alive timer only after a first response: a connection that
        # never sends a request would otherwise stay open (and hold a descriptor) forever.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._table.release(self.conn)
        super().connection_lost(exc)
