"""Who is calling: the Unix socket peer's credentials (SO_PEERCRED), never a client-sent field."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass


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
