"""JSON parsed strictly: an object that repeats a key is refused.

Python's ``json`` keeps the last of a repeated key, so ``{"amount": "1", "amount": "400"}``
would be read as 400 by the hub and as 1 by a proxy, a log or a signature check that keeps the
first. ``loads`` parses with an ``object_pairs_hook`` and raises InvalidInputError (422) naming
the repeated key by its path (``body.components.0.provider``). The API parses every JSON request
body with it (``hub.api.jsonbody``), and the payment callback, which reads its raw body itself
(``hub.services.payments``), calls it too.
"""

from __future__ import annotations

import json
from typing import Any

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
