"""Billing routes (contract section 6): POST /billing/runs (admin), GET /customers/{id}/bills and
GET /bills/{id} (the customer's own key, operator, admin). The use-cases are in ``hub.billing``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from fastapi.responses import HTMLResponse
from pydantic import StringConstraints
from sqlmodel import Session

from hub.api.deps import (
    Admin,
    AnyRole,
    ContextDep,
    SessionDep,
    ensure_account,
    write,
    write_created,
)
from hub.api.jsonbody import HubRoute
from hub.api.schemas import Body, Id
from hub.billing.announce import announce
from hub.billing.periods import Period
from hub.billing.profiles import profile_of
from hub.billing.render import bill_pdf
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.billing.subscriptions import create_subscription, get_subscription
from hub.billing.views import bill_document, bill_owner, bill_page, bill_summaries
from hub.errors import InvalidInputError, NotFoundError
from hub.models import Customer, utcnow
from hub.money import parse_amount

router = APIRouter(tags=["billing"], route_class=HubRoute)


BillId = Annotated[int, Path(ge=1, le=2**62)]


class RunIn(Body):
    period: str


class SubscriptionIn(Body):
    id: Id
    customer: Id
    provider: Id
    service: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    per_month: str
    start: date | None = None  # extension: the first day charged (default: today)


def billing_settings() -> BillingSettings:
    return BillingSettings()


@router.post(
    "/billing/runs", status_code=201, responses={200: {"description": "already billed: its bills"}}
)
def create_run(body: RunIn, ctx: ContextDep, _: Admin, response: Response) -> dict[str, Any]:
    try:
        period = Period.parse(body.period)
    except ValueError as exc:
        raise InvalidInputError("period", str(exc)) from exc
    settings = billing_settings()

    def work(session: Session) -> Any:
        return run_billing(session.connection(), period, settings, utcnow())

    result = write(ctx.engine, work)
    notifier = ctx.control.notifier if ctx.control is not None else None
    announce(ctx.engine, result.events, notifier.notify if notifier else None, settings)
    if not result.created:
        response.status_code = 200
    return {"period": str(result.period), "bills": result.bills}


@router.get("/customers/{customer_id}/bills")
def customer_bills(customer_id: str, session: SessionDep, who: AnyRole) -> list[dict[str, Any]]:
    ensure_account(who, customer_id)
    if session.get(Customer, customer_id) is None:
        raise NotFoundError("customer", customer_id)
    return bill_summaries(session.connection(), customer_id)


@router.get("/bills/{bill_id}")
def get_bill(bill_id: BillId, session: SessionDep, who: AnyRole) -> dict[str, Any]:
    conn = session.connection()
    ensure_account(who, bill_owner(conn, bill_id))
    return bill_document(conn, bill_id)


@router.get("/customers/{customer_id}/profile")
def customer_profile(customer_id: str, session: SessionDep, who: AnyRole) -> dict[str, Any]:
    """Each profile field with its source and time, per provider account numbers, and the open
    conflicts between sources (an admin resolves one by importing the field)."""
    ensure_account(who, customer_id)
    if session.get(Customer, customer_id) is None:
        raise NotFoundError("customer", customer_id)
    return profile_of(session.connection(), customer_id)


@router.post("/subscriptions", status_code=201)
def create_sub(body: SubscriptionIn, ctx: ContextDep, who: Admin) -> dict[str, Any]:
    """A recurring, unmetered service: a monthly charge from one provider, posted in advance
    by the scheduler (the first month prorated by days)."""
    per_month = parse_amount("per_month", body.per_month, ctx.currency)
    start = body.start or utcnow().astimezone(billing_settings().zone).date()
    values = {**body.model_dump(), "per_month": per_month, "currency": ctx.currency,
              "start": start}  # fmt: skip

    def work(session: Session) -> dict[str, Any]:
        conn = session.connection()
        create_subscription(conn, values)
        return get_subscription(conn, body.id)

    return write_created(ctx.engine, work, who, ("subscription", body.id),
                         body.model_dump(mode="json"))  # fmt: skip


PAGE = {200: {"content": {"text/html": {}}, "description": "the bill as a page"}}
PDF = {200: {"content": {"application/pdf": {}}, "description": "the bill as a PDF"}}


@router.get("/bills/{bill_id}/html", response_class=Response, responses=PAGE)  # type: ignore[arg-type]
def get_bill_html(bill_id: BillId, session: SessionDep, who: AnyRole) -> HTMLResponse:
    conn = session.connection()
    ensure_account(who, bill_owner(conn, bill_id))
    return HTMLResponse(bill_page(conn, bill_id))


@router.get("/bills/{bill_id}/pdf", response_class=Response, responses=PDF)  # type: ignore[arg-type]
def get_bill_pdf(bill_id: BillId, session: SessionDep, who: AnyRole) -> Response:
    conn = session.connection()
    ensure_account(who, bill_owner(conn, bill_id))
    number = bill_document(conn, bill_id)["number"]
    return Response(
        bill_pdf(bill_page(conn, bill_id)),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{number}.pdf"'},
    )
