"""A customer's billing (``customers.flags["billing"]``), set in the caller's transaction."""

from __future__ import annotations

from sqlmodel import Session

from hub.errors import NotFoundError
from hub.models import Customer


def set_billing(session: Session, customer_id: str, billing: str) -> None:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    customer.flags = {**(customer.flags or {}), "billing": billing}
    session.add(customer)
    session.flush()
