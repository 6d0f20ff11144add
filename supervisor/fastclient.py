"""A stdlib-only client for the CLI's one-shot reads (status, list, cancel).

`runspace status ID` is often run in loops by scripts; importing httpx costs more than the
request itself. This speaks plain HTTP/1.1 over the Unix socket with http.client and raises
the same errors as supervisor.client.Client, so the CLI treats both alike.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from supervisor.errors import DaemonUnreachable, raise_for_problem


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("runspace", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class FastClient:
    """Same method names and results as Client for status, list and cancel."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._conn = _UnixConnection(socket_path, timeout)

    def __enter__(self) -> FastClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._conn.close()

    def request(self, method: str, path: str) -> Any:
        try:
            self._conn.request(method, path, headers={"Accept": "application/json"})
            resp = self._conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        raise_for_problem(resp.status, data, resp.reason)
        return json.loads(data)

    def status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")

    def list(self, **filters: Any) -> dict[str, Any]:
        query = urlencode({k: v for k, v in filters.items() if v is not None})
        return self.request("GET", "/v1/jobs" + (f"?{query}" if query else ""))
