"""`runspace ui`: listen on 127.0.0.1, print the URL with its token, serve until Ctrl-C (or
SIGTERM, SIGHUP: stopped the same way, its redirect file removed)."""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from types import FrameType

import uvicorn

from supervisor.names import user_name
from supervisor.client import Client
from supervisor.errors import RunspaceError
from supervisor.ui.app import create_app
from supervisor.ui.guard import Secrets
from supervisor.ui.opener import browser_opened
from supervisor.ui.peer import OwnUserOnly


def serve(socket_path: Path, port: int, open_browser: bool) -> None:
    with Client(socket_path, timeout=10) as client:  # unreachable: the CLI's one line and exit 3, now
        client.request("GET", "/healthz")
    listener = _listen(port)
    port = listener.getsockname()[1]
    keys = Secrets()
    url = f"http://127.0.0.1:{port}/?token={keys.token}"
    print(url, flush=True)  # the first line of stdout: scripts and tests read it
    app = create_app(socket_path, user_name(os.getuid()), keys, port)
    # Quiet (stdout keeps the URL alone); open event streams get 2 s to end on Ctrl-C.
    config = uvicorn.Config(app, http=OwnUserOnly, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    try:
        with _stopped_by_signals(server), browser_opened(url) if open_browser else nullcontext():  # see opener.py
            server.run(sockets=[listener])
    except (KeyboardInterrupt, _Stop):  # uvicorn re-raises Ctrl-C once it has shut down: the way to stop it, exit 0
        pass
    print("runspace ui: stopped", file=sys.stderr)


class _Stop(Exception):
    """SIGTERM or SIGHUP reached `runspace ui`: it stops as on Ctrl-C."""


@contextmanager
def _stopped_by_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM (`kill PID`, a service manager) and SIGHUP (the terminal closed) stop the dashboard
    as Ctrl-C does: through the blocks that remove what it made, the redirect file with its token
    among them. Their default action would end the process on the spot.

    uvicorn handles SIGTERM while it serves, shuts down, then raises the signal again: the handler
    here turns that into an exception. SIGHUP, which uvicorn does not handle, asks uvicorn for the
    same shutdown (open event streams get their grace), so it ends the same way."""
    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stop(signal.Signals(signum).name)

    def shut_down(signum: int, frame: FrameType | None) -> None:
        server.handle_exit(signal.SIGTERM, frame)  # uvicorn raises SIGTERM again once it has stopped

    before = {signal.SIGTERM: signal.signal(signal.SIGTERM, stop),
              signal.SIGHUP: signal.signal(signal.SIGHUP, shut_down)}
    try:
        yield
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _listen(port: int) -> socket.socket:
    """Loopback only: the token keeps other local users out, and nothing else can reach it at all."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise RunspaceError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; "
                            "choose another port with --port (0: any free one)") from None
    sock.listen(128)
    return sock
