"""Imports from other tiers (contract section 6): ``POST /imports/readings`` and
``POST /imports/profiles`` (admin, provider: only its own customers and their meters), JSON
``{"rows": [...]}`` or ``text/csv``. The use-cases are in ``hub.billing``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ContextDep, ProviderOrAdmin
from hub.billing.access import provider_of, serves_customer, serves_meter
from hub.billing.profiles import import_profiles
from hub.billing.readings import import_readings
from hub.billing.rows import FeedError, read_rows
from hub.errors import InvalidInputError
from hub.keys import Principal
from hub.models import Role

router = APIRouter(prefix="/imports", tags=["imports"])


def _rows(body: bytes, request: Request, header: tuple[str, ...]) -> list[Any]:
    try:
        return read_rows(body, request.headers.get("content-type", ""), header)
    except FeedError as exc:
        raise InvalidInputError("rows", str(exc)) from exc


def _source(who: Principal) -> str:
    return f"provider:{provider_of(who.account_id)}" if who.role is Role.PROVIDER else "admin"


FEED_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object", "required": ["rows"], "properties": {
                "rows": {"type": "array", "items": {"type": "object"}}}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}  # fmt: skip
FEED_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "the feed as a whole is unreadable (bad rows are reported in the 200)"}
}


@router.post("/readings", openapi_extra=FEED_BODY, responses=FEED_RESPONSES)
async def readings(request: Request, ctx: ContextDep, who: ProviderOrAdmin) -> dict[str, Any]:
    rows = _rows(await request.body(), request, ("meter", "at", "import"))
    allowed = None
    if who.role is Role.PROVIDER:
        provider = provider_of(who.account_id)

        def allowed(conn: Connection, meter: str) -> bool:
            return serves_meter(conn, provider, meter)

    return await run_in_threadpool(import_readings, ctx.engine, rows, currency=ctx.currency,
                                   allowed=allowed, source=_source(who))  # fmt: skip


@router.post("/profiles", openapi_extra=FEED_BODY, responses=FEED_RESPONSES)
async def profiles(request: Request, ctx: ContextDep, who: ProviderOrAdmin) -> dict[str, Any]:
    rows = _rows(await request.body(), request, ("customer", "address", "postal_code", "country",
                                                  "delivery"))  # fmt: skip
    allowed = None
    if who.role is Role.PROVIDER:
        provider = provider_of(who.account_id)

        def allowed(conn: Connection, customer: str) -> bool:
            return serves_customer(conn, provider, customer)

    return await run_in_threadpool(import_profiles, ctx.engine, rows, source=_source(who),
                                   allowed=allowed)  # fmt: skip
