"""POST /remittances (operator, admin): paper stubs' scan lines as text/plain, one per line
(``hub.services.remittances``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ContextDep, Operator
from hub.api.jsonbody import HubRoute
from hub.api.routes.payments import read_capped
from hub.errors import InvalidInputError
from hub.services.remittances import remit

router = APIRouter(tags=["payments"], route_class=HubRoute)

MAX_BODY = 1024 * 1024


@router.post(
    "/remittances",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string"},
                                       "example": "2026000001RF 000000001234 5\n"}},
        }
    },
)  # fmt: skip
async def remittances(request: Request, ctx: ContextDep, _: Operator) -> dict[str, Any]:
    """``{"accepted": [{"line", "bill", "payment"}], "rejected": [{"line", "reason"}]}``."""
    body = await read_capped(request, MAX_BODY)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("body", "not UTF-8 text") from exc
    return await run_in_threadpool(remit, ctx.runtime, text)
