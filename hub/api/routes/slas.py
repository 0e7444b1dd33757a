"""POST /slas (admin): a service-level agreement between a customer and a provider, which the
``sla`` selection policy honours (contract section 5, ``hub.services.selection``)."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from hub.api.deps import Admin, ContextDep, write
from hub.api.jsonbody import HubRoute
from hub.api.schemas import SlaIn, SlaOut
from hub.services.selection import create_sla

router = APIRouter(prefix="/slas", tags=["selection"], route_class=HubRoute)


@router.post("", status_code=201, response_model=SlaOut)
def create(body: SlaIn, ctx: ContextDep, _: Admin) -> SlaOut:
    def work(session: Session) -> SlaOut:
        sla = create_sla(session, body.customer, body.provider, body.start, body.end)
        return SlaOut(id=sla.id or 0, customer=sla.customer_id, provider=sla.provider_id,
                      start=sla.start, end=sla.end)  # fmt: skip

    return write(ctx.engine, work)
