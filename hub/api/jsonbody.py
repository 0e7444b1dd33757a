"""JSON request bodies, parsed in one place by ``hub.strictjson.loads``: an object that repeats
a key is refused with 422 naming it. Every route is a ``HubRoute``, whose requests parse their
JSON body with ``loads``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from hub.strictjson import loads


def is_json(content_type: str | None) -> bool:
    """Whether FastAPI would parse a body of this type as JSON."""
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JSONRequest(Request):
    """A request whose ``json()`` is ``loads``."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class HubRoute(APIRoute):
    """A route whose JSON body is parsed by ``loads`` before FastAPI reads it: a repeated key
    answers 422 naming it. (Text that is not JSON is left to FastAPI: 422, or 400 if not UTF-8.)"""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        takes_body = self.body_field is not None

        async def route(request: Request) -> Response:
            request = JSONRequest(request.scope, request.receive)
            if takes_body and is_json(request.headers.get("content-type")):
                with suppress(ValueError):
                    await request.json()
            return await handler(request)

        return route
