"""The two systemd protocols the daemon speaks: sd_notify and socket activation (LISTEN_FDS)."""

from __future__ import annotations

import os
import socket

SD_LISTEN_FDS_START = 3


def notify(message: str) -> bool:
    """Send `READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1` to systemd; False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(message.encode(), address)
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec, as systemd recommends; None when the watchdog is off or not ours."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2e6


def socket_activated() -> bool:
    """systemd passed this process its listening sockets (listen_sockets() takes them)."""
    return os.environ.get("LISTEN_PID") == str(os.getpid())


def listen_sockets() -> list[socket.socket]:
    """Sockets passed by systemd socket activation, if they are meant for this process."""
    if not socket_activated():
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sockets.append(socket.socket(fileno=fd))
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    return sockets
