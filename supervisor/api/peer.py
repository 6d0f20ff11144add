"""Who is calling: the Unix socket peer's credentials (SO_PEERCRED), never a client-sent field;
and the per-connection rules that apply before any request is read (slot, idle timeout)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from supervisor.api.connections import ConnectionTable


@dataclass(frozen=True)
class PeerCred:
    pid: int
    uid: int
    gid: int


def read_peercred(sock: socket.socket) -> PeerCred | None:
    if sock.family != socket.AF_UNIX:
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return PeerCred(*struct.unpack("3i", raw))


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
        from supervisor.api.connections import Connection

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
