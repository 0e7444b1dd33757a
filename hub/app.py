"""The FastAPI application: routers under /api/v1, the dashboard at /, one error handler, and a
lifespan that starts and stops the live services (MQTT ingest, scheduler)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from hub import jobs, web
from hub.api import errors
from hub.api.context import HubContext
from hub.api.middleware import guard
from hub.api.routes import (
    accounts,
    customers,
    events,
    fleet,
    gateways,
    ledger,
    meters,
    payments,
    providers,
    system,
    tariffs,
)
from hub.api.schemas import ERROR_RESPONSES
from hub.control.engine import CreditControl
from hub.control.webhook import Channels, WebhookNotifier
from hub.metrics import HttpMetrics
from hub.settings import HubSettings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
VERSION = "1.0.0"
INGEST_CONNECT_WAIT_S = 10.0  # longest start-up waits for the ingest subscription


class HubApp(FastAPI):
    """FastAPI with the hub's guards (``hub.api.middleware``) outside everything else, even the
    500 handler: they see each request before its body is parsed or its key checked."""

    def __init__(self, *, max_body_bytes: int, **options: Any) -> None:
        self.max_body_bytes = max_body_bytes
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return guard(super().build_middleware_stack(), max_body_bytes=self.max_body_bytes)


def create_app(
    settings: HubSettings, engine: Engine, ingest: Any | None = None, *, scheduler: bool = False
) -> FastAPI:
    """The hub's app on ``engine`` (schema already migrated). ``ingest``: a started-by-lifespan
    IngestService (``start()``/``stop()``), or None for the API alone. ``scheduler``: run the
    background jobs (``serve`` does)."""
    webhook = (
        WebhookNotifier(settings.webhook_url, settings.webhook_secret)
        if settings.webhook_url
        else None
    )
    control = CreditControl(
        engine,
        wake=ingest.wake_commands if ingest is not None else None,
        notifier=Channels(webhook) if webhook is not None else Channels(),
        ttl=timedelta(seconds=settings.command_ttl_s),
    )
    if ingest is not None and getattr(ingest, "control", None) is not None:
        ingest.control.notifier = control.notifier  # usage-driven notices reach the webhook too
    ctx = HubContext(settings=settings, engine=engine, ingest=ingest, control=control)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.stopping.clear()
        sched = None
        if webhook is not None:
            webhook.start()
        if ingest is not None:
            await run_in_threadpool(ingest.start)
            # Ready only once subscribed: a gateway's records sent before the hub's first-ever
            # subscription would be dropped by the broker (there is no session to queue them).
            if not await run_in_threadpool(ingest.wait_connected, INGEST_CONNECT_WAIT_S):
                log.warning("ingest: not connected to the broker yet; the API starts anyway")
        if scheduler:
            sched = jobs.start_scheduler(ctx)
        log.info("hub API ready (%s)", settings.currency)
        try:
            yield
        finally:
            ctx.stopping.set()
            if sched is not None:
                await run_in_threadpool(jobs.stop_scheduler, ctx, sched)
            if ingest is not None:
                await run_in_threadpool(ingest.stop)
            if webhook is not None:
                await run_in_threadpool(webhook.stop)

    app = HubApp(
        max_body_bytes=settings.max_body_bytes,
        title="SMSA hub",
        version=VERSION,
        description="Service measurement and settlement agent: prepaid metering API "
        "(contract section 5). Authenticate with `Authorization: Bearer <key>`.",
        lifespan=lifespan,
        docs_url=None,  # hub.web.docs serves /docs and /redoc from the package, not a CDN
        redoc_url=None,
    )
    app.state.hub = ctx
    app.add_middleware(HttpMetrics, metrics=ctx.metrics)  # per route template: hub.metrics
    errors.install(app)
    for module in (
        providers,
        tariffs,
        customers,
        accounts,
        gateways,
        meters,
        events,
        fleet,
        ledger,
        payments,
    ):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(system.router)
    app.include_router(system.router, prefix=API_PREFIX, include_in_schema=False)
    web.install(app)
    return app
