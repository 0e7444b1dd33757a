"""The FastAPI application: routers under /api/v1, the dashboard at /, one error handler, and a
lifespan that starts and stops the services the composition root built (``hub.compose``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from hub import web
from hub.api import errors
from hub.api.context import HubContext
from hub.api.middleware import guard
from hub.api.routes import (
    accounts,
    audit,
    billing,
    billpay,
    customers,
    events,
    fleet,
    gateways,
    imports,
    insights,
    keys,
    ledger,
    meters,
    payments,
    printsites,
    providers,
    remittances,
    system,
    tariffs,
    tokens,
)
from hub.api.schemas import ERROR_RESPONSES
from hub.compose import HubServices, compose
from hub.metrics import HttpMetrics
from hub.settings import HubSettings

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
VERSION = "1.0.0"


class HubApp(FastAPI):
    """FastAPI with the hub's guards (``hub.api.middleware``) outside everything else, even the
    500 handler: they see each request before its body is parsed or its key checked."""

    def __init__(self, *, max_body_bytes: int, **options: Any) -> None:
        self.max_body_bytes = max_body_bytes
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        return guard(super().build_middleware_stack(), max_body_bytes=self.max_body_bytes)


def create_app(settings: HubSettings, engine: Engine) -> FastAPI:
    """The API alone on ``engine`` (schema already migrated): no ingest, no scheduler, commands
    stay ``queued``. ``smsa-hub serve`` composes the live services (``hub.compose``) and calls
    ``build_app``."""
    return build_app(compose(settings, engine))


def build_app(services: HubServices) -> FastAPI:
    """The hub's HTTP API in front of ``services``, whose start and stop are its lifespan."""
    settings = services.runtime.settings
    ctx = HubContext(runtime=services.runtime, ingest=services.ingest)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        ctx.stopping.clear()
        ctx.bell.start(asyncio.get_running_loop())
        await run_in_threadpool(services.start)
        log.info("hub API ready (%s)", settings.currency)
        try:
            yield
        finally:
            ctx.stopping.set()
            await run_in_threadpool(services.stop)
            await run_in_threadpool(ctx.bell.stop)

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
        billing,
        billpay,
        remittances,
        printsites,
        imports,
        insights,
        keys,
        tokens,
        audit,
    ):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    app.include_router(system.router)
    app.include_router(system.router, prefix=API_PREFIX, include_in_schema=False)
    web.install(app)
    return app
