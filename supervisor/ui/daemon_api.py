"""The dashboard's async client of the daemon's Unix socket (runs in the `runspace ui` process).

It connects as the uid that started the dashboard, so the daemon's SO_PEERCRED identity, and
every rule about who sees what, apply to the dashboard unchanged.
"""

from __future__ import annotations

import time
from urllib.parse import quote
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from supervisor.errors import DaemonUnreachable, raise_for_problem

_FEATURES_TTL = 30.0  # seconds: endpoints that appear when the daemon is upgraded show up soon after
_UNREACHABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, FileNotFoundError)


def segment(value: str) -> str:
    """A job id, user or batch id as one URL path segment: `../` in one cannot reach another route."""
    return quote(value, safe="")


class DaemonApi:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket_path)),
            base_url="http://runspace",
            timeout=httpx.Timeout(30.0, read=None),
        )
        self._paths: frozenset[str] = frozenset()
        self._paths_read = -_FEATURES_TTL

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self._http.request(method, path, **kwargs)
        except _UNREACHABLE as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None
        raise_for_problem(resp.status_code, resp.content, resp.reason_phrase)
        return resp

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    async def has(self, path: str) -> bool:
        """Whether the daemon serves `path` (as its OpenAPI spec names it, e.g. `/v1/queue`).

        Restart and queue control came later than the rest: an older daemon answers 404 to
        them, so the pages hide what it cannot do instead of offering a button that fails."""
        if time.monotonic() - self._paths_read > _FEATURES_TTL:
            spec = await self.json("GET", "/openapi.json")
            self._paths = frozenset(spec.get("paths", {}))
            self._paths_read = time.monotonic()
        return path in self._paths

    async def list_jobs(self, **filters: Any) -> dict[str, Any]:
        params = {k: v for k, v in filters.items() if v not in (None, "")}
        return await self.json("GET", "/v1/jobs", params=params)

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self.json("GET", f"/v1/jobs/{segment(job_id)}")

    async def job_log(self, job_id: str, offset: int = 0) -> tuple[str, int]:
        resp = await self.request("GET", f"/v1/jobs/{segment(job_id)}/log", params={"offset": offset})
        return resp.text, int(resp.headers.get("x-log-offset", offset + len(resp.content)))

    async def user_log(self, user: str, offset: int = 0) -> tuple[str, int]:
        resp = await self.request("GET", f"/v1/users/{segment(user)}/log", params={"offset": offset})
        return resp.text, int(resp.headers.get("x-log-offset", offset))

    def follow_job_log(self, job_id: str, offset: int) -> AsyncIterator[str]:
        return self._follow(f"/v1/jobs/{segment(job_id)}/log", offset)

    def follow_user_log(self, user: str, offset: int) -> AsyncIterator[str]:
        return self._follow(f"/v1/users/{segment(user)}/log", offset)

    async def act(self, job_id: str, verb: str) -> dict[str, Any]:
        """POST /v1/jobs/{id}/cancel or /restart: the status object the daemon answers."""
        return await self.json("POST", f"/v1/jobs/{segment(job_id)}/{verb}")

    async def _follow(self, path: str, offset: int) -> AsyncIterator[str]:
        """A followed log's text as the daemon sends it, until the daemon ends the stream."""
        try:
            async with self._http.stream("GET", path, params={"offset": offset, "follow": "true"}) as resp:
                if resp.status_code >= 400:
                    await resp.aread()
                    raise_for_problem(resp.status_code, resp.content, resp.reason_phrase)
                async for text in resp.aiter_text():
                    yield text
        except _UNREACHABLE as exc:
            raise DaemonUnreachable.at(self.socket_path, exc) from None


async def read_tail(read: Callable[[int], Awaitable[tuple[str, int]]], keep: int) -> tuple[str, int, bool]:
    """The last `keep` characters of a log, the offset where it ends now, and whether anything
    before them was left out. The API hands a log out 1 MiB at a time from an offset, so the
    end is found by reading on until nothing comes."""
    offset, tail, cut = 0, "", False
    while True:
        text, next_offset = await read(offset)
        if next_offset == offset:
            return tail, offset, cut
        tail += text
        if len(tail) > keep:
            tail, cut = tail[len(tail) - keep:], True
        offset = next_offset
