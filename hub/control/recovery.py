"""Debt recovery when a top-up commits (the split itself is ``hub.control.rules.recovery``).

The prepaid account's balance is what the meter enforces. Below zero it holds emergency credit
(down to the lowered floor) and, past the floor, debt: energy consumed after the cut-off, in
friendly hours, by a protected customer or before the gateway heard of the cut-off. With a
``debt_recovery_share`` the customer's debt lives in a debt account ``debt:<customer>`` (kind
customer, no floor, negative = owed): at each top-up the debt past the floor moves there and
the share of the top-up repays it, in one ``transfer`` entry keyed ``recovery:<top-up entry>``
whose metadata records the split (emergency repaid, debt moved, debt recovered, credit). A
``debt_recovery`` event records the split of every top-up made below zero, with or without a
share. Emergency credit is repaid in full first; when the prepaid balance is back at or above
zero the floor returns to 0.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlmodel import Session

from hub.control.effects import BY, Plan, restore_floor
from hub.control.rules import recovery
from hub.control.state import account_ctx, refresh_balance
from hub.errors import BelowFloorError
from hub.ledger import ensure_account, post_entry
from hub.ledger.posting import find_by_key
from hub.models import (
    Account,
    AccountKind,
    Customer,
    EntryKind,
    Event,
    JournalEntry,
    JournalLine,
    table,
)

log = logging.getLogger(__name__)

accounts = table(Account)
customers = table(Customer)
entries = table(JournalEntry)
lines = table(JournalLine)
events = table(Event)


def debt_account_id(customer_id: str) -> str:
    return f"debt:{customer_id}"


def recovery_key(topup_entry_id: int) -> str:
    return f"recovery:{topup_entry_id}"


def apply_recovery(session: Session, account_id: str, entry_id: int, plan: Plan) -> None:
    """Apply debt recovery for top-up entry ``entry_id`` to ``account_id`` (at most once:
    a second call for the same entry finds its ``debt_recovery`` record and does nothing)."""
    conn = session.connection()
    if conn.execute(select(customers.c.id).where(customers.c.id == account_id)).first() is None:
        return  # not a customer's prepaid account (an alternate or sponsor account)
    ctx = account_ctx(conn, account_id)
    if ctx is None:
        return
    key = recovery_key(entry_id)
    if find_by_key(conn, key) is not None or _recorded(session, entry_id):
        return
    entry = conn.execute(
        select(entries.c.kind, entries.c["metadata"]).where(entries.c.id == entry_id)
    ).first()
    amount = conn.execute(
        select(lines.c.amount).where(lines.c.entry_id == entry_id, lines.c.account_id == account_id)
    ).scalar()
    if entry is None or entry.kind != EntryKind.TOPUP.value or not amount or amount <= 0:
        log.warning("entry %s is not a top-up of %s; no debt recovery", entry_id, account_id)
        return
    meta = entry.metadata or {}
    balance_after = int(meta.get("balance_after", ctx.balance))
    before = balance_after - int(amount)
    debt_id = debt_account_id(account_id)
    debt_balance = conn.execute(
        select(accounts.c.balance).where(accounts.c.id == debt_id)
    ).scalar_one_or_none()
    if before >= 0 and not debt_balance:
        return  # nothing owed when the money came in
    share = ctx.policy.debt_recovery_share
    split = recovery(int(amount), before, emergency_in_use=max(0, -(ctx.floor or 0)),
                     debt=max(0, -int(debt_balance or 0)), share=share)  # fmt: skip
    how = {**split.as_json(), "topup_entry": entry_id, "share": _share_text(share),
           "floor": ctx.floor}  # fmt: skip
    recovery_entry = None
    if split.transfer != 0:
        ensure_account(conn, debt_id, name=f"Debt of {account_id}", kind=AccountKind.CUSTOMER,
                       currency=ctx.currency)  # fmt: skip
        moves = [(account_id, split.transfer), (debt_id, -split.transfer)]
        try:
            recovery_entry = post_entry(
                session, EntryKind.TRANSFER, moves, ctx.currency, idempotency_key=key,
                memo=f"debt recovery for top-up {entry_id}", metadata={"recovery": how},
            )  # fmt: skip
        except BelowFloorError as exc:  # usage since the top-up: recover at the next one
            log.warning("debt recovery for top-up %s deferred: %s", entry_id, exc)
            return
    refresh_balance(conn, ctx)
    reason = (f"{_prefix(entry_id)}{amount} in: emergency repaid {split.emergency_repaid}, "
              f"debt recovered {split.debt_recovered}, credit {split.credit}")  # fmt: skip
    data = {"by": BY, "account": account_id, "entry_id": recovery_entry,
            "debt_account": debt_id if split.transfer else None, **how}  # fmt: skip
    plan.record(session, "debt_recovery", None, reason, data, rule="debt_recovery")
    if ctx.floor is not None and ctx.floor < 0 and ctx.balance >= 0:
        restore_floor(session, ctx, plan, f"top-up {entry_id}")


def _recorded(session: Session, entry_id: int) -> bool:
    """A ``debt_recovery`` event for this top-up exists (netting mode posts no entry)."""
    conn = session.connection()
    found = conn.execute(
        select(events.c.id).where(events.c.kind == "debt_recovery",
                                  events.c.reason.like(f"{_prefix(entry_id)}%"))
    ).first()  # fmt: skip
    return found is not None


def _prefix(entry_id: int) -> str:
    return f"top-up entry {entry_id}: "


def _share_text(share: object) -> str | None:
    return None if share is None else str(share)
