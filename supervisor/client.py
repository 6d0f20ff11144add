"""The HTTP-over-Unix-socket client for the daemon, used by the CLI (it runs in the CLI's process) and the tests.

Scripts loop on the CLI (`for f in *.pdf; do runspace submit ocr file=$f; done`), so its
start-up is its speed: httpx costs more to import than the request takes (~220 ms of CPU of
a cold `runspace submit`), and even http.client pulls in the email parser and ssl. This sends
one HTTP/1.1 request per connection over the Unix socket and reads the answer with httptools'
parser (the daemon's own): a body sent whole, a body read whole or as it arrives (a followed
log). Every problem+json answer becomes the RunspaceError the daemon raised.
"""

from __future__ import annotations

import _socket  # socket.py builds four IntEnums on import: 4 ms of a cold command, for nothing used here
import codecs
import json
from pathlib import Path

import httptools

from supervisor.errors import DaemonUnreachable, raise_for_problem

# typing.TYPE_CHECKING without importing typing (2 ms of `runspace status`; supervisor/cli_main.py)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_CHUNK = 65536


class Headers(dict):
    """Response headers by lower-case name, looked up in any case (as HTTP names are)."""

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


class Response:
    """One answer: status, headers and the whole body."""

    def __init__(self, status_code: int, reason_phrase: str, headers: Headers, content: bytes) -> None:
        self.status_code, self.reason_phrase, self.headers, self.content = status_code, reason_phrase, headers, content

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _Exchange:
    """One request on its own connection, and httptools' callbacks for its answer."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.parser = httptools.HttpResponseParser(self)
        self.reason = ""
        self.headers = Headers()
        self.chunks: list[bytes] = []  # body parts parsed and not yet taken
        self.head_done = self.complete = False
        self._name = ""

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._name = name.decode("latin-1").lower()
        self.headers[self._name] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        self.complete = True

    def read_some(self) -> None:
        data = self.sock.recv(_CHUNK)
        if not data:
            raise ConnectionResetError("the daemon closed the connection before its answer was whole")
        self.parser.feed_data(data)

    def take(self) -> bytes:
        body, self.chunks = b"".join(self.chunks), []
        return body

    @property
    def status_code(self) -> int:
        return self.parser.get_status_code()


class Client:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self.timeout = timeout  # to connect and send; an answer may take as long as it takes (a wait)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        pass  # one connection per request, closed with its answer

    def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> Response:
        """The answer; a problem+json answer raises its RunspaceError."""
        exchange = self._send(method, path, json, params, headers)
        try:
            while not exchange.complete:
                exchange.read_some()
        except (OSError, httptools.HttpParserError) as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        finally:
            exchange.sock.close()
        body = exchange.take()
        raise_for_problem(exchange.status_code, body, exchange.reason)
        return Response(exchange.status_code, exchange.reason, exchange.headers, body)

    def stream(self, path: str, params: dict[str, Any]) -> Iterator[str]:
        """The text of a GET's body as it arrives, until the daemon ends it."""
        exchange = self._send("GET", path, None, params, None)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        try:
            while not exchange.head_done:
                exchange.read_some()
            if exchange.status_code >= 400:
                while not exchange.complete:
                    exchange.read_some()
                raise_for_problem(exchange.status_code, exchange.take(), exchange.reason)
            while True:
                text = decoder.decode(exchange.take())
                if text:
                    yield text
                if exchange.complete:
                    break
                exchange.read_some()
        except (OSError, httptools.HttpParserError) as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        finally:  # also when the reader stops early (Ctrl-C, a closed pipe)
            exchange.sock.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def _send(self, method: str, path: str, body: Any, params: dict[str, Any] | None,
              headers: dict[str, str] | None) -> _Exchange:
        payload = b"" if body is None else json.dumps(body).encode()
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            from urllib.parse import urlencode

            path += ("&" if "?" in path else "?") + urlencode(query, doseq=True)  # a list: the key repeated
        head = [f"{method} {path} HTTP/1.1", "Host: runspace", "Accept: application/json",
                f"Content-Length: {len(payload)}", "Connection: close"]
        if body is not None:
            head.append("Content-Type: application/json")
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(str(self.socket_path))
            sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
            sock.settimeout(None)
        except OSError as exc:
            sock.close()
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        return _Exchange(sock)

    def submit(self, job: str, params: dict[str, Any], wait: float | None = None, **extra: Any) -> tuple[int, dict]:
        body = {"job": job, "params": params, **{k: v for k, v in extra.items() if v is not None}}
        if wait:
            body["wait"] = wait
        resp = self.request("POST", "/v1/jobs", json=body)
        return resp.status_code, resp.json()

    def status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{_quoted(job_id)}").json()

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{_quoted(job_id)}/wait", params={"timeout": timeout}).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{_quoted(job_id)}/cancel").json()

    def restart(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{_quoted(job_id)}/restart").json()

    def remove(self, job_id: str) -> None:
        self.request("DELETE", f"/v1/jobs/{_quoted(job_id)}")

    def clean(self, states: list[str], older_than: float) -> int:
        params: dict[str, Any] = {"state": states, "older_than": older_than}
        return self.request("DELETE", "/v1/jobs", params=params).json()["removed"]

    def queue(self) -> dict[str, Any]:
        return self.request("GET", "/v1/queue").json()

    def put_queue(self, control: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", "/v1/queue", json=control).json()

    def change_queue(self, change: dict[str, Any]) -> dict[str, Any]:
        """PATCH /v1/queue: only what changes (supervisor/queue_control.py QueueChange)."""
        return self.request("PATCH", "/v1/queue", json=change).json()

    def list(self, **filters: Any) -> dict[str, Any]:
        return self.request("GET", "/v1/jobs", params=filters).json()

    def job_types(self) -> dict[str, Any]:
        return self.request("GET", "/v1/jobtypes").json()

    def log(self, job_id: str, offset: int = 0) -> str:
        return self.request("GET", f"/v1/jobs/{_quoted(job_id)}/log", params={"offset": offset}).text

    def log_pages(self, job_id: str) -> Iterator[str]:
        """The whole log as it is now, read a page (1 MiB) at a time."""
        offset = 0
        while True:
            resp = self.request("GET", f"/v1/jobs/{job_id}/log", params={"offset": offset})
            next_offset = int(resp.headers.get("x-log-offset", offset))
            if next_offset == offset:
                return
            yield resp.text
            offset = next_offset

    def follow_log(self, job_id: str, offset: int = 0) -> Iterator[str]:
        return self.stream(f"/v1/jobs/{_quoted(job_id)}/log", {"offset": offset, "follow": "true"})

    def submit_batch(self, job: str, items: list[dict[str, Any]], callback: str | None = None,
                     batch_id: str | None = None, **extra: Any) -> tuple[int, dict]:
        body: dict[str, Any] = {"job": job, "items": items, **{k: v for k, v in extra.items() if v}}
        if callback:
            body["callback"] = {"job": callback}
        if batch_id:
            body["batch_id"] = batch_id
        resp = self.request("POST", "/v1/batches", json=body)
        return resp.status_code, resp.json()

    def batch(self, batch_id: str, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        return self.request("GET", f"/v1/batches/{_quoted(batch_id)}", params={"limit": limit, "cursor": cursor}).json()

    def user_log(self, user: str, offset: int = 0) -> tuple[str, int]:
        """A chunk of the user's log from `offset`, and the offset to continue from."""
        resp = self.request("GET", f"/v1/users/{_quoted(user)}/log", params={"offset": offset})
        return resp.text, int(resp.headers.get("x-log-offset", offset))

    def follow_user_log(self, user: str, offset: int = 0) -> Iterator[str]:
        return self.stream(f"/v1/users/{_quoted(user)}/log", {"offset": offset, "follow": "true"})


def _quoted(segment: str) -> str:
    """A path segment; ids (hex) need no quoting, and urllib costs 2 ms to import."""
    if segment.isascii() and segment.isalnum():
        return segment
    from urllib.parse import quote

    return quote(segment, safe="")
