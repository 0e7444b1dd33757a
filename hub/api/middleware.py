"""The hub's outermost HTTP layers, plain ASGI: they see each request before routing, body
parsing or authentication, and each response last (a 500 included).

``BodyLimit`` caps request bodies. A ``Content-Length`` over the limit is answered 413 at once,
before a byte of the body is read; a body without one (chunked) is counted as the app reads
it, and the read that passes the limit ends the request with 413, so the hub never holds more
than the limit of a body. The 413 closes the connection: the rest is never read either.

``SecurityHeaders`` adds ``X-Content-Type-Options: nosniff`` to every response, and to pages
(``text/html``) ``X-Frame-Options: DENY`` and ``frame-ancestors 'none'`` in their
Content-Security-Policy, so no other site can frame the dashboard.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api.errors import error_response
from hub.errors import BodyTooLargeError

FRAME_ANCESTORS = "frame-ancestors 'none'"


class _OverflowError(Exception):
    """Raised into the app by ``receive`` when the body passed the limit."""


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        received = 0
        overflowed = started = False

        async def capped_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    overflowed = True
                    raise _OverflowError
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if overflowed and not started:
                return  # whatever the app answers to a body cut short, the answer is 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except Exception:
            if not overflowed or started:
                raise
        if overflowed and not started:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(BodyTooLargeError(self.limit))
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if headers.get("content-type", "").startswith("text/html"):
                    headers["X-Frame-Options"] = "DENY"
                    policy = headers.get("content-security-policy", "")
                    if "frame-ancestors" not in policy:
                        policy = f"{policy}; {FRAME_ANCESTORS}" if policy else FRAME_ANCESTORS
                        headers["Content-Security-Policy"] = policy
            await send(message)

        await self.app(scope, receive, send_with_headers)


def guard(app: ASGIApp, *, max_body_bytes: int) -> ASGIApp:
    """``app`` behind the hub's outermost layers."""
    return SecurityHeaders(BodyLimit(app, max_body_bytes))
