"""`runspace ui`: listen on 127.0.0.1, print the URL with its token, serve until Ctrl-C."""

from __future__ import annotations

import os
import socket
import sys
from contextlib import nullcontext
from pathlib import Path

import uvicorn

from supervisor.names import user_name
from supervisor.client import Client
from supervisor.errors import RunspaceError
from supervisor.ui.app import create_app
from supervisor.ui.guard import Secrets
from supervisor.ui.opener import browser_opened


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
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    try:
        with browser_opened(url) if open_browser else nullcontext():  # never the URL itself: see opener.py
            uvicorn.Server(config).run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C once it has shut down: the way to stop it, exit 0
        pass
    print("runspace ui: stopped", file=sys.stderr)


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
