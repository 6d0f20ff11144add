"""The daemon's listening Unix socket: mode 0660, optional group, stale files handled."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
from pathlib import Path

from supervisor.errors import RunspaceError


class SocketInUse(RunspaceError):
    title = "Socket in use"


def _someone_listens(path: Path) -> bool:
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
        if _someone_listens(path):
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


def remove_socket_file(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        name = sock.getsockname()
        if isinstance(name, str) and name:
            os.unlink(name)
