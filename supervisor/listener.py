"""The daemon's listening sockets: the Unix socket (mode 0660, optional group, stale files
handled) and the optional TCP listener (loopback unless told otherwise)."""

from __future__ import annotations

import grp
import os
import socket
from pathlib import Path

from supervisor.errors import RunspaceError


class SocketInUse(RunspaceError):
    title = "Socket in use"


def someone_listens(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def bind_unix(path: Path, group: str | None) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if someone_listens(path):
            raise SocketInUse(f"another runspace daemon is already listening on {path}")
        path.unlink()  # stale: left by a daemon that died
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o117)  # never a moment where the socket is world-accessible
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o660)
    if group:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    sock.listen(512)
    return sock


def parse_host_port(spec: str) -> tuple[str, int]:
    """`8765` → loopback; `127.0.0.1:8765`, `[::1]:8765`, `0.0.0.0:8765` as given."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]")
    if not port.isdigit():
        raise RunspaceError(f"tcp_listen={spec!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
    return host, int(port)


def bind_tcp(spec: str) -> socket.socket:
    host, port = parse_host_port(spec)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SocketInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(512)
    return sock
