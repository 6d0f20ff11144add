"""A cap on request bodies, checked while they arrive: the daemon never holds more than the
cap in memory for one request, and the caller gets 413 as problem+json like every error."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from supervisor.api.problems import problem
from supervisor.errors import BodyTooLarge


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            exc = self._too_large()
            await problem(exc.status, exc.title, exc.detail, exc.slug)(scope, receive, send)
            return
        received, responding = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                if responding:  # a streaming response (a log follow) listens for a disconnect
                    return {"type": "http.disconnect"}
                raise self._too_large()  # rendered by the app's RunspaceError handler
            return message

        async def watched(message: Message) -> None:
            nonlocal responding
            responding = responding or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)

    def _too_large(self) -> BodyTooLarge:
        return BodyTooLarge(f"the request body is larger than max_request_bytes ({self.max_bytes} bytes); "
                            "split it (a batch into several) or raise RUNSPACE_MAX_REQUEST_BYTES")
