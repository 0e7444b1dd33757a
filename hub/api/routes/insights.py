"""GET /customers/{id}/insights (contract section 6; customer own, operator, admin) and
GET /insights/anomalies (operator, admin): ``hub.insights``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from hub.api.deps import AnyRole, ContextDep, Operator, ensure_account
from hub.api.jsonbody import HubRoute
from hub.db import read_tx
from hub.errors import NotFoundError
from hub.insights import reads
from hub.insights.service import InsightsSettings, customer_view
from hub.models import Role, utcnow

router = APIRouter(tags=["insights"], route_class=HubRoute)


@router.get("/customers/{customer_id}/insights")
async def customer_insights(customer_id: str, ctx: ContextDep, who: AnyRole) -> dict[str, Any]:
    """Usage profile per meter (load shapes, time-of-use shares, month and year changes, the
    comparison with similar customers), anomalies with evidence, payment behaviour with a risk
    score and its reasons, and offers with their reasons. A customer sees each offer once."""
    ensure_account(who, customer_id)
    with read_tx(ctx.engine) as conn:
        if not reads.exists(conn, customer_id):
            raise NotFoundError("customer", customer_id)
    by_customer = who.role is Role.CUSTOMER
    return await run_in_threadpool(
        customer_view, ctx.engine, customer_id, utcnow(), InsightsSettings(),
        by_customer=by_customer,
    )  # fmt: skip


@router.get("/insights/anomalies")
def anomalies(
    ctx: ContextDep, _: Operator, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[dict[str, Any]]:
    """The newest anomaly events (kind ``anomaly``): meter, reason, severity, evidence."""
    with read_tx(ctx.engine) as conn:
        return reads.anomalies_list(conn, limit)
