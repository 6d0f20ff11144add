"""Who may use the dashboard, and the headers every answer carries.

The server listens on 127.0.0.1, which every local user can reach: the token printed by
`runspace ui` (or the cookie it is exchanged for) is what makes a request the starting
user's. Pure ASGI, not BaseHTTPMiddleware, so server-sent event streams pass untouched.
"""

from __future__ import annotations

import hmac
import html
import secrets
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "runspace_ui"
# No inline script or style, nothing from another origin: job logs and params are untrusted text.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    # Not no-referrer: with it Chromium sends `Origin: null` on form posts, which the CSRF check refuses.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


@dataclass(frozen=True)
class Secrets:
    """Made once per `runspace ui` run; nothing is stored."""

    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # in the printed URL
    session: str = field(default_factory=lambda: secrets.token_urlsafe(32))  # the cookie's value
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # in every form


def same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Guard:
    """401 without the token or the cookie. The token is good once: swapped for the cookie and
    dropped from the URL, so a copy of the printed URL (scrollback, a shared screen) opens nothing."""

    def __init__(self, app: ASGIApp, keys: Secrets, port: int) -> None:
        self.app = app
        self.keys = keys
        self.port = port
        self._token_used = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_headers(send)
        headers = Headers(scope=scope)
        # DNS rebinding: a page of another site, its name pointed at 127.0.0.1, would send its own Host.
        if headers.get("host") not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            await PlainTextResponse("unknown host", status_code=400)(scope, receive, send)
            return
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
        if not self._token_used and same(query.get("token"), self.keys.token):
            self._token_used = True
            await self._log_in(scope, query)(scope, receive, send)
            return
        cookie = SimpleCookie(headers.get("cookie", ""))
        if COOKIE not in cookie or not same(cookie[COOKIE].value, self.keys.session):
            text = ("401: open the dashboard with the URL `runspace ui` printed; its token works once "
                    "(in one browser): for another, start `runspace ui` again\n")
            await PlainTextResponse(text, status_code=401)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _log_in(self, scope: Scope, query: dict[str, str]) -> Response:
        rest = urlencode({k: v for k, v in query.items() if k != "token"})
        target = scope["path"] + (f"?{rest}" if rest else "")
        response: Response
        if Headers(scope=scope).get("sec-fetch-site", "none") in ("none", "same-origin"):
            response = RedirectResponse(target, status_code=303)
        else:
            # Sent here by another site: the browser-opening file (supervisor/ui/opener.py) is one.
            # A redirect would go on as that site's navigation, without the SameSite=Strict
            # cookie; a hop from a page of ours is our own, and takes it along.
            link = html.escape(target, quote=True)
            response = HTMLResponse(f'<!DOCTYPE html><meta http-equiv="refresh" content="0;url={link}">'
                                    f'<p><a href="{link}">Open the runspace dashboard</a></p>')
        response.set_cookie(COOKIE, self.keys.session, httponly=True, samesite="strict", path="/")
        return response


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in _HEADERS.items():
                headers.setdefault(name, value)
        await send(message)

    return sending
