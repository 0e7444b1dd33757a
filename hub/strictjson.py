"""JSON parsed strictly: an object that repeats a key is refused.

Python's ``json`` keeps the last of a repeated key, so ``{"amount": "1", "amount": "400"}``
would be read as 400 by the hub and as 1 by a proxy, a log or a signature check that keeps the
first. ``loads`` parses with an ``object_pairs_hook`` and raises InvalidInputError (422) naming
the repeated key by its path (``body.components.0.provider``). The API parses every JSON request
body with it (``hub.api.jsonbody``), and the payment callback, which reads its raw body itself
(``hub.services.payments``, ``hub.services.billpay``), calls it too, through ``parse_body``.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from hub.errors import InvalidInputError

M = TypeVar("M", bound=BaseModel)


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


def parse_body(body: bytes, model: type[M], max_bytes: int) -> M:
    """A raw request body as ``model``: InvalidInputError (422) for one over ``max_bytes``, not
    JSON, a repeated key, or a field that does not validate (named by its path)."""
    if len(body) > max_bytes:
        raise InvalidInputError("body", f"larger than {max_bytes} bytes")
    try:
        return model.model_validate(loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "body"
            raise InvalidInputError(field, err["msg"]) from exc
        raise InvalidInputError("body", "not JSON") from exc
