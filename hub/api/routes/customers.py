"""POST /customers (admin): a customer and its prepaid account (same id); PATCH (admin) changes
it, audited; GET and its change history for operators."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write, write_created
from hub.api.jsonbody import HubRoute
from hub.api.schemas import MAX_ID, ChangeOut, CustomerIn, CustomerOut, CustomerPatch
from hub.audit import CUSTOMER_CHANGED, history
from hub.billing.bill import POSTPAID, billing_of
from hub.billing.customers import set_billing
from hub.control.rules import stored_rules
from hub.control.state import set_credit_rules
from hub.errors import NotFoundError
from hub.ledger.accounts import create_customer
from hub.models import Account, Customer, Event
from hub.money import major
from hub.services.customers import change_customer, check_alternate

router = APIRouter(prefix="/customers", tags=["customers"], route_class=HubRoute)


def customer_out(session: Session, customer_id: str) -> CustomerOut:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    account = session.get(Account, customer_id)
    assert account is not None
    return CustomerOut(
        id=customer.id,
        name=customer.name,
        protected=customer.protected,
        alternate_account=customer.alternate_account_id,
        account=account.id,
        balance=major(account.balance, account.currency),
        currency=account.currency,
        credit_rules=stored_rules(customer.flags),
        billing=billing_of(customer.flags),
    )


@router.post("", status_code=201, response_model=CustomerOut)
def create(body: CustomerIn, ctx: ContextDep, who: Admin) -> CustomerOut:
    def work(session: Session) -> CustomerOut:
        if body.alternate_account is not None:
            check_alternate(session, body.id, body.alternate_account, ctx.currency)
        create_customer(
            session,
            body.id,
            body.name,
            ctx.currency,
            protected=body.protected,
            alternate_account_id=body.alternate_account,
        )
        if body.credit_rules is not None:
            set_credit_rules(session.connection(), body.id, body.credit_rules)
        if body.billing == POSTPAID:
            set_billing(session, body.id, POSTPAID)
        return customer_out(session, body.id)

    return write_created(ctx.engine, work, who, ("customer", body.id), body.model_dump(mode="json"))


@router.get("/{customer_id}", response_model=CustomerOut)
def get(customer_id: str, session: SessionDep, _: Operator) -> CustomerOut:
    return customer_out(session, customer_id)


@router.patch("/{customer_id}", response_model=CustomerOut)
def patch(customer_id: str, body: CustomerPatch, ctx: ContextDep, who: Admin) -> CustomerOut:
    def work(session: Session) -> CustomerOut:
        change_customer(
            session, customer_id, body.given(), currency=ctx.currency, key_id=who.key_id
        )
        return customer_out(session, customer_id)

    return write(ctx.engine, work)


@router.get("/{customer_id}/history", response_model=list[ChangeOut])
def customer_history(
    *,
    customer_id: str,
    session: SessionDep,
    _: Operator,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="event id cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ChangeOut]:
    if session.get(Customer, customer_id) is None:
        raise NotFoundError("customer", customer_id)
    rows = history(session, CUSTOMER_CHANGED, "customer", customer_id, before=before, limit=limit)
    return [change_out(e) for e in rows]


def change_out(event: Event) -> ChangeOut:
    data = event.data or {}
    return ChangeOut(id=event.id or 0, at=event.at, key_id=data.get("key_id"),
                     reason=event.reason, changes=data.get("changes", {}))  # fmt: skip
