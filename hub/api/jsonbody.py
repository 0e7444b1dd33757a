"""JSON request bodies, parsed in one place: an object that repeats a key is refused.

Python's ``json`` keeps the last of a repeated key, so ``{"amount": "1", "amount": "400"}``
would be read as 400 by the hub and as 1 by a proxy, a log or a signature check that keeps the
first. ``loads`` parses with an ``object_pairs_hook`` and raises InvalidInputError (422) naming
the repeated key by its path (``body.components.0.provider``). Every route is a ``HubRoute``,
whose requests parse their JSON body with ``loads``; the payment callback, which reads its raw
body itself, calls ``loads`` too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from hub.errors import InvalidInputError


class _Repeated(dict[str, Any]):
    """An object that repeated ``key``; it marks where the error is."""

    key = ""


def _pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(items)
    if len(obj) == len(items):
        return obj
    marked = _Repeated(obj)
    seen: set[str] = set()
    for key, _ in items:
        if key in seen:
            marked.key = key
            break
        seen.add(key)
    return marked


def _path_to_repeat(value: Any, path: list[str]) -> list[str] | None:
    """The path of the first object (in document order) that repeated a key, and the key."""
    if isinstance(value, _Repeated):
        return [*path, value.key]
    if isinstance(value, dict):
        children: Any = value.items()
    elif isinstance(value, list):
        children = enumerate(value)
    else:
        return None
    for name, child in children:
        if (found := _path_to_repeat(child, [*path, str(name)])) is not None:
            return found
    return None


def loads(raw: bytes | str) -> Any:
    """``json.loads`` that refuses a repeated key (InvalidInputError naming it); ValueError for
    text that is not JSON (or not UTF-8), as ``json.loads``."""
    repeated = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal repeated
        obj = _pairs(items)
        repeated = repeated or isinstance(obj, _Repeated)
        return obj

    value = json.loads(raw, object_pairs_hook=pairs)
    if repeated and (path := _path_to_repeat(value, [])) is not None:
        raise InvalidInputError(".".join(["body", *path]), f"duplicate key {path[-1]!r}")
    return value


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
