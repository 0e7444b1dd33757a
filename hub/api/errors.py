"""The one place where hub errors become HTTP answers.

Every ``HubError`` carries ``http_status``; the body is ``{"detail": message, "error": class}``.
An ``InvalidInputError`` answers 422 in FastAPI's own shape (``detail`` a list with ``loc``
naming the field), so every 422 names its field the same way.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.errors import HubError, InvalidInputError, TooManyFailuresError

log = logging.getLogger(__name__)

# A field named "path.id" or "header.Idempotency-Key" is reported there, anything else in body.
LOCATIONS = frozenset({"body", "path", "query", "header"})


def error_response(exc: HubError) -> JSONResponse:
    status = exc.http_status
    if isinstance(exc, InvalidInputError):
        parts = exc.field.split(".") if exc.field else []
        loc = parts if parts and parts[0] in LOCATIONS else ["body", *parts]
        msg = exc.message.removeprefix(f"{exc.field}: ")
        detail = [{"type": "value_error", "loc": loc, "msg": msg, "input": None}]
        return JSONResponse({"detail": detail}, status_code=422)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, TooManyFailuresError):
        headers = {"Retry-After": str(exc.retry_after)}
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    return JSONResponse(
        {"detail": exc.message, "error": type(exc).__name__},
        status_code=status,
        headers=headers,
    )


async def _hub_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HubError)
    return error_response(exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HubError, _hub_error)
