"""The fleet at a glance (operator): meter counts and disconnections and top-ups per day, for
the dashboard at fleet size (``hub.fleet`` reads them, one statement each)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from hub import fleet
from hub.api.deps import ContextDep, Operator, SessionDep
from hub.api.jsonbody import HubRoute
from hub.api.schemas import FleetDay, FleetSummary
from hub.money import major

router = APIRouter(prefix="/fleet", tags=["fleet"], route_class=HubRoute)


@router.get("/summary", response_model=FleetSummary)
def summary(session: SessionDep, _: Operator) -> FleetSummary:
    s = fleet.summary(session.connection())
    return FleetSummary(meters=s.meters, online=s.online, off=s.off)


@router.get("/daily", response_model=list[FleetDay])
def daily(
    session: SessionDep,
    ctx: ContextDep,
    _: Operator,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> list[FleetDay]:
    """The last ``days`` UTC days, oldest first, today included."""
    today = datetime.now(UTC).date()
    rows = fleet.daily(session.connection(), today - timedelta(days=days - 1), today)
    return [FleetDay(day=d.day, disconnects=d.disconnects, topups=d.topups,
                     topup_amount=major(d.topup_minor, ctx.currency)) for d in rows]  # fmt: skip
