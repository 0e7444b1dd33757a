"""Changing a customer after creation (``PATCH /customers/{id}``, issue 15 item 5).

The fields given replace the stored ones: ``name``, ``protected``, ``alternate_account`` (null
removes it), ``credit_rules`` (the whole object, as ``POST /customers`` takes it) and ``billing``
(``prepaid`` or ``postpaid``: each billing run bills a period as the customer's billing is when
it runs, so a change counts from the next period billed). In one
transaction: the change, its audit event (``hub.audit``: who, and per field from/to) and, when
the credit rules, the protection or the alternate account changed, the new credit state of
every meter the customer pays a share of, queued in the command table
(``hub.control.credit_state``) so the gateways enforce the new rules. Credit control's next
tick re-evaluates the meters under them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session

from hub.audit import CUSTOMER_CHANGED, changes, record_change
from hub.billing.bill import billing_of
from hub.billing.customers import set_billing
from hub.control.credit_state import queue_credit_states_in
from hub.control.rules import CustomerRules, stored_rules
from hub.control.state import set_credit_rules
from hub.errors import InvalidInputError, NotFoundError
from hub.models import Account, Customer
from hub.rating.payers import paid_meters

FIELDS = ("name", "protected", "alternate_account", "credit_rules", "billing")
# What the credit state a gateway holds depends on (the alternate account's headroom too).
STATE_FIELDS = frozenset({"protected", "alternate_account", "credit_rules"})


def check_alternate(session: Session, customer_id: str, alternate: str, currency: str) -> None:
    """422 unless ``alternate`` is another existing account in the hub's currency."""
    if alternate == customer_id:
        raise InvalidInputError("alternate_account", "must differ from the customer")
    account = session.get(Account, alternate)
    if account is None:
        raise InvalidInputError("alternate_account", f"unknown account {alternate!r}")
    if account.currency != currency:
        raise InvalidInputError("alternate_account", f"not a {currency} account")


def snapshot(customer: Customer) -> dict[str, Any]:
    return {
        "name": customer.name,
        "protected": customer.protected,
        "alternate_account": customer.alternate_account_id,
        "credit_rules": stored_rules(customer.flags),
        "billing": billing_of(customer.flags),
    }


def change_customer(
    session: Session, customer_id: str, given: Mapping[str, Any], *, currency: str, key_id: int
) -> dict[str, dict[str, Any]]:
    """Apply ``given`` (a subset of ``FIELDS``; ``credit_rules`` a ``CustomerRules``) in the
    caller's transaction; the changes made, per field ``{"from", "to"}``."""
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFoundError("customer", customer_id)
    before = snapshot(customer)
    if "name" in given:
        customer.name = given["name"]
    if "protected" in given:
        customer.protected = bool(given["protected"])
    if "alternate_account" in given:
        alternate = given["alternate_account"]
        if alternate is not None:
            check_alternate(session, customer_id, alternate, currency)
        customer.alternate_account_id = alternate
    session.add(customer)
    session.flush()
    if "billing" in given:
        set_billing(session, customer_id, given["billing"])
    rules = given.get("credit_rules")
    if isinstance(rules, CustomerRules):
        set_credit_rules(session.connection(), customer_id, rules)
        session.expire(customer)
    changed = changes(before, snapshot(customer))
    if not changed:
        return changed
    record_change(session, CUSTOMER_CHANGED, key_id=key_id, subject=("customer", customer_id),
                  changed=changed)  # fmt: skip
    if STATE_FIELDS & set(changed):
        meters = paid_meters(session.connection(), customer_id)
        queue_credit_states_in(session.connection(), meters, reason="customer changed")
    return changed
