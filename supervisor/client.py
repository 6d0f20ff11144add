"""HTTP-over-Unix-socket client for the daemon, used by the CLI and the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from supervisor.errors import DaemonUnreachable, raise_for_problem


def _raise_for_problem(resp: httpx.Response) -> None:
    raise_for_problem(resp.status_code, resp.content, resp.reason_phrase)


class Client:
    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://runspace",
            timeout=httpx.Timeout(timeout, read=None),
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        _raise_for_problem(resp)
        return resp

    def submit(self, job: str, params: dict[str, Any], wait: float | None = None, **extra: Any) -> tuple[int, dict]:
        body = {"job": job, "params": params, **{k: v for k, v in extra.items() if v is not None}}
        if wait:
            body["wait"] = wait
        resp = self.request("POST", "/v1/jobs", json=body)
        return resp.status_code, resp.json()

    def status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{job_id}").json()

    def wait(self, job_id: str, timeout: float) -> dict[str, Any]:
        return self.request("GET", f"/v1/jobs/{job_id}/wait", params={"timeout": timeout}).json()

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{job_id}/cancel").json()

    def restart(self, job_id: str) -> dict[str, Any]:
        return self.request("POST", f"/v1/jobs/{job_id}/restart").json()

    def remove(self, job_id: str) -> None:
        self.request("DELETE", f"/v1/jobs/{job_id}")

    def clean(self, states: list[str], older_than: float) -> int:
        params: dict[str, Any] = {"state": states, "older_than": older_than}
        return self.request("DELETE", "/v1/jobs", params=params).json()["removed"]

    def queue(self) -> dict[str, Any]:
        return self.request("GET", "/v1/queue").json()

    def put_queue(self, control: dict[str, Any]) -> dict[str, Any]:
        return self.request("PUT", "/v1/queue", json=control).json()

    def list(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v is not None}
        return self.request("GET", "/v1/jobs", params=params).json()

    def job_types(self) -> dict[str, Any]:
        return self.request("GET", "/v1/jobtypes").json()

    def log(self, job_id: str, offset: int = 0) -> str:
        return self.request("GET", f"/v1/jobs/{job_id}/log", params={"offset": offset}).text

    def follow_log(self, job_id: str, offset: int = 0) -> Iterator[str]:
        return self._stream(f"/v1/jobs/{job_id}/log", offset)

    def _stream(self, path: str, offset: int) -> Iterator[str]:
        """Text of a followed log, as the daemon sends it, until the daemon ends the stream."""
        try:
            with self._http.stream("GET", path, params={"offset": offset, "follow": "true"}) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    _raise_for_problem(resp)
                yield from resp.iter_text()
        except (httpx.ConnectError, FileNotFoundError) as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None

    def submit_batch(self, job: str, items: list[dict[str, Any]], callback: str | None = None,
                     batch_id: str | None = None) -> tuple[int, dict]:
        body: dict[str, Any] = {"job": job, "items": items}
        if callback:
            body["callback"] = {"job": callback}
        if batch_id:
            body["batch_id"] = batch_id
        resp = self.request("POST", "/v1/batches", json=body)
        return resp.status_code, resp.json()

    def batch(self, batch_id: str, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        return self.request("GET", f"/v1/batches/{batch_id}", params=params).json()

    def user_log(self, user: str, offset: int = 0) -> tuple[str, int]:
        """A chunk of the user's log from `offset`, and the offset to continue from."""
        resp = self.request("GET", f"/v1/users/{user}/log", params={"offset": offset})
        return resp.text, int(resp.headers.get("x-log-offset", offset))

    def follow_user_log(self, user: str, offset: int = 0) -> Iterator[str]:
        return self._stream(f"/v1/users/{user}/log", offset)
