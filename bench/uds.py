"""A minimal keep-alive HTTP/1.1 client over a Unix socket (stdlib only).

The benchmarks measure the daemon, so the client side is kept as thin as possible.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("runspace", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class UdsClient:
    def __init__(self, path: Path, timeout: float = 60.0) -> None:
        self._conn = _UnixConnection(str(path), timeout)

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        payload = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        try:
            self._conn.request(method, url, body=payload, headers=headers)
            resp = self._conn.getresponse()
        except (http.client.HTTPException, OSError):
            self._conn.close()  # a dropped keep-alive connection: reconnect once
            self._conn.request(method, url, body=payload, headers=headers)
            resp = self._conn.getresponse()
        data = resp.read()
        kind = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(data) if "json" in kind else data.decode())

    def submit(self, job: str, params: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        status, body = self.request("POST", "/v1/jobs", {"job": job, "params": params or {}, **extra})
        if status >= 300 and status != 202:
            raise RuntimeError(f"submit {job}: {status} {body}")
        return body

    def get(self, url: str) -> Any:
        status, body = self.request("GET", url)
        if status >= 400:
            raise RuntimeError(f"GET {url}: {status} {body}")
        return body

    def close(self) -> None:
        self._conn.close()
