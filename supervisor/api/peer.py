"""Who is calling: the Unix socket peer's credentials (SO_PEERCRED), never a client-sent field."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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
    """uvicorn's httptools protocol, plus the peer's credentials in every request's `scope["state"]`.

    uvicorn copies `app_state` into each request scope, so a per-connection copy carries
    the credentials to the app without any global table.
    """

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        peer = read_peercred(sock) if sock is not None else None
        # "tcp": the caller must prove who it is with a bearer token (api/tokens.py).
        transport = "unix" if peer is not None else "tcp"
        self.app_state = {**self.app_state, "peer": peer, "transport": transport}
