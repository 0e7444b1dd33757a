"""GET /healthz (no auth) and GET /metrics (Prometheus text, no auth), at the root and under
/api/v1."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from hub.api.context import HubContext
from hub.api.deps import ContextDep
from hub.api.jsonbody import HubRoute
from hub.api.scrape import exposition
from hub.db import session_scope

log = logging.getLogger(__name__)
router = APIRouter(tags=["system"], route_class=HubRoute)


def health(ctx: HubContext) -> dict[str, Any]:
    try:
        with session_scope(ctx.engine, write=False) as session:
            session.connection().execute(text("SELECT 1"))
        db_ok = True
    except Exception as exc:  # any failure means "not healthy", reported, not raised
        log.warning("health check: database: %s", exc)
        db_ok = False
    mqtt: bool | None = None
    if ctx.ingest is not None:
        mqtt = ctx.ingest.connected
    return {"ok": db_ok, "db": db_ok, "mqtt": mqtt}


@router.get("/healthz")
async def healthz(ctx: ContextDep) -> JSONResponse:
    body = await run_in_threadpool(health, ctx)
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


@router.get("/metrics", response_class=PlainTextResponse)  # the body: hub.api.scrape
async def metrics(ctx: ContextDep) -> Response:
    body, media_type = await run_in_threadpool(exposition, ctx)
    return Response(body, media_type=media_type)
