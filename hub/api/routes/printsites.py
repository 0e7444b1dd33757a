"""Print sites (contract section 6, "Paper routing"): POST /print-sites (admin) and
GET /print-sites/{id}/batches/{date} (operator, admin). The use-cases are in
``hub.billing.printsites`` and ``hub.billing.batches``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field, StringConstraints
from sqlmodel import Session

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write
from hub.api.jsonbody import HubRoute
from hub.api.schemas import Body, Id, MoneyIn, Name
from hub.billing.batches import batch
from hub.billing.printsites import NewSite, create_site, site_document
from hub.billing.routing import Zone, normalize
from hub.errors import InvalidInputError
from hub.models import utcnow
from protocol.money import to_minor

router = APIRouter(tags=["billing"], route_class=HubRoute)

Prefix = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 \-]{0,16}$")]


class ZoneIn(Body):
    prefix: Prefix  # "" serves every postal code
    transport: MoneyIn
    co2_g: Annotated[int, Field(ge=0, le=10**6)]


class PrintSiteIn(Body):
    id: Id
    name: Name
    per_piece: MoneyIn
    daily_capacity: Annotated[int, Field(ge=0, le=10**9)]
    zones: Annotated[list[ZoneIn], Field(min_length=1, max_length=10_000)]


def _minor(field: str, amount: str, currency: str) -> int:
    try:
        return to_minor(amount, currency)
    except ValueError as exc:
        raise InvalidInputError(field, str(exc)) from exc


def new_site(body: PrintSiteIn, currency: str) -> NewSite:
    """The site in minor units with normalised prefixes; InvalidInputError naming the field."""
    zones: dict[str, Zone] = {}
    for n, z in enumerate(body.zones):
        prefix = normalize(z.prefix)
        if prefix in zones:
            raise InvalidInputError(f"zones.{n}.prefix", f"duplicate prefix {prefix!r}")
        zones[prefix] = Zone(prefix, _minor(f"zones.{n}.transport", z.transport, currency),
                             z.co2_g)  # fmt: skip
    return NewSite(body.id, body.name, _minor("per_piece", body.per_piece, currency), currency,
                   body.daily_capacity, tuple(zones.values()))  # fmt: skip


@router.post("/print-sites", status_code=201)
def create_print_site(body: PrintSiteIn, ctx: ContextDep, _: Admin) -> dict[str, Any]:
    """A print and mail site: paper bills for postal codes starting with a zone's prefix may be
    printed and mailed there (contract section 6, "Paper routing"). Money in the hub's
    currency; prefixes compared without spaces and hyphens, in upper case."""
    site = new_site(body, ctx.currency)

    def work(session: Session) -> dict[str, Any]:
        conn = session.connection()
        create_site(conn, site, utcnow())
        return site_document(conn, site.id)

    return write(ctx.engine, work)


PDF = {200: {"content": {"application/pdf": {}}, "description": "the day's batch as one PDF"}}


@router.get("/print-sites/{site_id}/batches/{day}", response_class=Response, responses=PDF)  # type: ignore[arg-type]
def get_batch(site_id: str, day: date, session: SessionDep, _: Operator) -> Response:
    """The paper bills routed to the site for ``day`` as one print-ready PDF: postal-code
    order, each bill starting on an odd page, the address in a DL window envelope's field."""
    return Response(
        batch(session.connection(), site_id, day),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{site_id}-{day.isoformat()}.pdf"'},
    )
