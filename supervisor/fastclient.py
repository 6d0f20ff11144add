"""A lean client for the CLI's one-shot reads (status, list, cancel).

`runspace status ID` is often run in loops by scripts, so its start-up is its speed:
httpx costs more to import than the request takes, and even http.client pulls in the email
parser and ssl (14 ms here, more than the rest of the command). This sends one HTTP/1.1
request per connection over the Unix socket and reads the answer with httptools' parser
(the daemon's own), raising the same errors as supervisor.client.Client so the CLI treats
both alike.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httptools

from supervisor.errors import DaemonUnreachable, raise_for_problem

# typing.TYPE_CHECKING without importing typing (2 ms of `runspace status`; supervisor/cli_main.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

_CHUNK = 65536


class _Response:
    """httptools' callbacks: the parts of one response we use."""

    def __init__(self) -> None:
        self.reason = ""
        self.body = bytearray()
        self.complete = False

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk

    def on_message_complete(self) -> None:
        self.complete = True


class FastClient:
    """Same method names and results as Client for status, list and cancel."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def __enter__(self) -> FastClient:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def request(self, method: str, path: str) -> Any:
        try:
            status, reason, body = self._exchange(method, path)
        except (OSError, httptools.HttpParserError) as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        raise_for_problem(status, body, reason)
        return json.loads(body)

    def _exchange(self, method: str, path: str) -> tuple[int, str, bytes]:
        head = (f"{method} {path} HTTP/1.1\r\nHost: runspace\r\nAccept: application/json\r\n"
                f"Content-Length: 0\r\nConnection: close\r\n\r\n")
        response = _Response()
        parser = httptools.HttpResponseParser(response)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(head.encode("ascii"))
            while not response.complete:
                data = sock.recv(_CHUNK)
                if not data:
                    raise ConnectionResetError("the daemon closed the connection before answering")
                parser.feed_data(data)
        return parser.get_status_code(), response.reason, bytes(response.body)

    def status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{_quoted(job_id)}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{_quoted(job_id)}/cancel")

    def list(self, **filters: Any) -> dict[str, Any]:
        from urllib.parse import urlencode

        query = urlencode({k: v for k, v in filters.items() if v is not None})
        return self.request("GET", "/v1/jobs" + (f"?{query}" if query else ""))


def _quoted(job_id: str) -> str:
    """The id as a path segment; a job id (hex) needs no quoting, and urllib costs 2 ms to import."""
    if job_id.isascii() and job_id.isalnum():
        return job_id
    from urllib.parse import quote

    return quote(job_id, safe="")
