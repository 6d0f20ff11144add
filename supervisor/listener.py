"""The daemon's listening sockets: the Unix socket (mode 0660, optional group, stale files
handled) and the optional TCP listener (loopback unless told otherwise)."""

from __future__ import annotations

import grp
import ipaddress
import os
import re
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


_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$")


def parse_host_port(spec: str) -> tuple[str, int]:
    """`8765` → loopback; `127.0.0.1:8765`, `[::1]:8765`, `0.0.0.0:8765` as given. A ValueError
    says what is wrong (the settings check tcp_listen with it, so a bad one stops the daemon
    in one line naming RUNSPACE_TCP_LISTEN)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host = "127.0.0.1"
    host = host.strip("[]")
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError("expected HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:8765")
    if ":" in host or host.replace(".", "").isdigit():  # an address, not a name
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host!r} is no IP address") from None
    elif not _HOSTNAME.match(host):
        raise ValueError(f"{host!r} is no host name")
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
