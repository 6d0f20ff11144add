"""One daemon per state dir and socket (daemon process): checked before anything is touched.

An exclusive flock on `<state dir>/daemon.lock` is held for the daemon's life (the kernel
drops it when the process ends, however it ends); a second daemon on the same state dir,
or on a socket a live daemon answers on, exits with one line and changes nothing.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from supervisor.errors import RunspaceError
from supervisor.listener import SocketInUse, someone_listens


class StateDirInUse(RunspaceError):
    title = "State dir in use"


def hold_state_dir(state_dir: Path) -> int:
    """Lock the state dir for this process; the returned fd must stay open while the daemon runs."""
    path = state_dir / "daemon.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StateDirInUse(f"another runspace daemon (pid {holder}) is running on the state dir {state_dir}; "
                            "stop it first (it keeps its socket, jobs and store)") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def refuse_a_live_socket(socket_path: Path) -> None:
    """Another daemon (with another state dir) answering on our socket: leave it alone."""
    if someone_listens(socket_path):
        raise SocketInUse(f"another runspace daemon is already listening on {socket_path}")
