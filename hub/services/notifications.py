"""A customer's prompts (issue 15, item 6): the notices credit control and the gateways recorded
for the meters an account pays for, with what would reconnect it and where to pay.

The meters an account pays for are those whose payer weights (``hub.rating.payers``) give it a
positive weight: its own meters, the shared meters it contributes to and the meters whose split
rule names it (a shared meter counts for each of its payers). Their ``low_credit``,
``emergency_credit``, ``disconnect`` and ``reconnect`` events (one event per fact,
``hub.events``) are the notices, newest first.

The amount that would reconnect is computed from the account's own balance and credit rules
(:func:`reconnect_amount`), the rules the agent and the hub apply (``protocol.rules``): after a
cut-off they reconnect when the balance rises above ``max(reconnect_above, 0)``. The top-up
link is the ``topup_url`` setting (``SMSA_HUB_TOPUP_URL``) with ``{account}`` and ``{amount}``
filled in (the amount as a decimal string in major units).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from hub.control.credit_state import alternate_headroom, credit_rules
from hub.errors import NotFoundError
from hub.models import Account, Customer, Event, table
from hub.money import major
from hub.rating.payers import paid_meters
from protocol.messages import CreditRules

NOTICE_KINDS = ("low_credit", "emergency_credit", "disconnect", "reconnect")

_events = table(Event)
_customers = table(Customer)
_accounts = table(Account)


@dataclass(frozen=True)
class Notice:
    id: int
    kind: str
    meter_id: str | None
    reason: str
    at: datetime


@dataclass(frozen=True)
class Notices:
    account_id: str
    currency: str
    balance: int
    reconnect_amount: int
    topup_url: str
    items: list[Notice]
    next_before: int | None


def reconnect_amount(balance: int, rules: CreditRules) -> int:
    """What brings ``balance`` strictly above the reconnect level ``max(reconnect_above, 0)``
    (minor units); 0 when it is above already."""
    return max(0, max(rules.reconnect_above, 0) + 1 - balance)


def topup_link(template: str, account_id: str, amount: int, currency: str) -> str:
    return template.format(account=quote(account_id, safe=""), amount=major(amount, currency))


def account_rules(conn: Connection, account_id: str) -> CreditRules:
    """The credit rules of the customer whose account this is (defaults for other accounts)."""
    customer = conn.execute(
        select(_customers.c.flags, _customers.c.protected).where(_customers.c.id == account_id)
    ).first()
    headroom = alternate_headroom(conn, [account_id]).get(account_id, 0)
    if customer is None:
        return credit_rules(None, False, headroom)
    return credit_rules(customer.flags, bool(customer.protected), headroom)


def notifications(
    session: Session, account_id: str, *, topup_url: str, before: int | None, limit: int
) -> Notices:
    """The account's notices, newest first (``before``: only older event ids); NotFoundError
    for an unknown account."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFoundError("account", account_id)
    conn = session.connection()
    meters = paid_meters(conn, account_id)
    stmt = select(_events.c.id, _events.c.kind, _events.c.meter_id, _events.c.reason,
                  _events.c.at).where(
        _events.c.meter_id.in_(meters), _events.c.kind.in_(NOTICE_KINDS)
    )  # fmt: skip
    if before is not None:
        stmt = stmt.where(_events.c.id < before)
    rows = conn.execute(stmt.order_by(_events.c.id.desc()).limit(limit + 1)).all()
    items = [Notice(r.id, r.kind, r.meter_id, r.reason, r.at) for r in rows[:limit]]
    amount = reconnect_amount(int(account.balance), account_rules(conn, account_id))
    return Notices(
        account_id=account_id,
        currency=account.currency,
        balance=int(account.balance),
        reconnect_amount=amount,
        topup_url=topup_link(topup_url, account_id, amount, account.currency),
        items=items,
        next_before=items[-1].id if len(rows) > limit and items else None,
    )
