"""Which local user is at the other end of a connection to the dashboard (`runspace ui` process).

Every local user can connect to 127.0.0.1. The token keeps them from its pages, but not from
holding connections open: uvicorn gives a connection that never sends a request all the time
it wants, so another user's 1,100 idle connections took every descriptor of a dashboard under
the usual limit of 1,024, and its own user could not load a page. The kernel knows whose socket
the other end is (sock_diag, what `ss -e` shows as uid:), so connections of other users than
the dashboard's own (root aside) are closed as they are accepted.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct

from uvicorn.protocols.http.auto import AutoHTTPProtocol

_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, _NLMSG_ERROR = 4, 20, 1, 2
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
_V4_MAPPED = bytes(10) + b"\xff\xff"
# struct inet_diag_msg after the netlink header: family, state, timer, retrans, the 48-byte
# inet_diag_sockid, expires, rqueue, wqueue, then the uid.
_UID_AT = 16 + 4 + 48 + 12


class _Unknowable(Exception):
    """The kernel cannot be asked (no sock_diag here: a sandbox): the token alone keeps others out."""


def peer_uid(local: tuple[str, int], peer: tuple[str, int]) -> int | None:
    """The uid owning the TCP socket at `peer` (IPv4 address, port) connected to ours at
    `local`; None if there is none (gone already). Raises _Unknowable if the kernel cannot say."""
    ours, theirs = socket.inet_aton(local[0]), socket.inet_aton(peer[0])
    # The peer's socket is IPv4, or IPv6 holding an IPv4-mapped address.
    for family, src, dst in ((socket.AF_INET, theirs + bytes(12), ours + bytes(12)),
                             (socket.AF_INET6, _V4_MAPPED + theirs, _V4_MAPPED + ours)):
        uid = _ask(family, struct.pack("!HH16s16s", peer[1], local[1], src, dst))
        if uid is not None:
            return uid
    return None


def _ask(family: int, addresses: bytes) -> int | None:
    """One exact lookup (SOCK_DIAG_BY_FAMILY, not a dump) of the socket with these ports and addresses."""
    request = (struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, _ALL_STATES) + addresses
               + struct.pack("=III", 0, _NO_COOKIE, _NO_COOKIE))
    header = struct.pack("=IHHII", 16 + len(request), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as netlink:
            netlink.settimeout(1.0)
            netlink.send(header + request)
            answer = netlink.recv(8192)
    except OSError as exc:
        raise _Unknowable(str(exc)) from None
    if struct.unpack_from("=H", answer, 4)[0] == _NLMSG_ERROR or len(answer) < _UID_AT + 4:
        return None  # no such socket
    return struct.unpack_from("=I", answer, _UID_AT)[0]


@functools.cache
def kernel_names_peers() -> bool:
    """Whether sock_diag names a socket's owner here, asked once about a connection of our own:
    an unknown socket and a kernel without inet_diag answer alike (ENOENT), and the second must
    not lock the dashboard's own user out."""
    try:
        with socket.create_server(("127.0.0.1", 0)) as server, \
                socket.create_connection(server.getsockname()[:2], timeout=1) as client:
            accepted, _ = server.accept()
            with accepted:
                return peer_uid(accepted.getsockname()[:2], client.getsockname()[:2]) == os.getuid()
    except (OSError, _Unknowable):
        return False


class OwnUserOnly(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol, closing at once a connection from another user than this one or root."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        local, peer = transport.get_extra_info("sockname"), transport.get_extra_info("peername")
        if not (local and peer and kernel_names_peers()):
            return
        try:
            uid = peer_uid(local[:2], peer[:2])
        except _Unknowable:
            return
        if uid not in (os.getuid(), 0):
            transport.abort()  # type: ignore[attr-defined]
