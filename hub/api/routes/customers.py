"""POST /customers (admin): a customer and its prepaid account (same id); GET for operators."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import Session

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write
from hub.api.jsonbody import HubRoute
from hub.api.schemas import CustomerIn, CustomerOut
from hub.billing.bill import POSTPAID, billing_of
from hub.billing.customers import set_billing
from hub.control.rules import stored_rules
from hub.control.state import set_credit_rules
from hub.errors import InvalidInputError, NotFoundError
from hub.ledger.accounts import create_customer
from hub.models import Account, Customer
from hub.money import major

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
def create(body: CustomerIn, ctx: ContextDep, _: Admin) -> CustomerOut:
    def work(session: Session) -> CustomerOut:
        if body.alternate_account is not None:
            if body.alternate_account == body.id:
                raise InvalidInputError("alternate_account", "must differ from the customer")
            alternate = session.get(Account, body.alternate_account)
            if alternate is None:
                raise InvalidInputError(
                    "alternate_account", f"unknown account {body.alternate_account!r}"
                )
            if alternate.currency != ctx.currency:
                raise InvalidInputError("alternate_account", f"not a {ctx.currency} account")
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

    return write(ctx.engine, work)


@router.get("/{customer_id}", response_model=CustomerOut)
def get(customer_id: str, session: SessionDep, _: Operator) -> CustomerOut:
    return customer_out(session, customer_id)
