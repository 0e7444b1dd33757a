"""Bills in the database (I/O): the gapless number counter, runs, and reading and writing bills
inside the caller's transaction. Bills and their lines are only ever inserted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, insert, select, update
from sqlalchemy.engine import Connection

from hub.billing.bill import Draft
from hub.billing.lines import LineKey, Totals
from hub.billing.periods import Period
from hub.ledger.bulk import CHUNK
from hub.ledger.sql import insert_ignore
from hub.models import metadata

bills: Table = metadata.tables["bills"]
bill_lines: Table = metadata.tables["bill_lines"]
counters: Table = metadata.tables["bill_counters"]
runs: Table = metadata.tables["billing_runs"]
customers: Table = metadata.tables["customers"]
accounts: Table = metadata.tables["accounts"]
events: Table = metadata.tables["events"]


def lock_counter(conn: Connection, issuer: str, year: int) -> int:
    """The last number used for ``issuer`` and ``year``, its row locked until the commit
    (PostgreSQL; SQLite's write lock is held from ``BEGIN IMMEDIATE``): billing runs serialise
    here, and a rolled-back run gives its numbers back."""
    conn.execute(insert_ignore(conn, counters, ["issuer", "year"])
                 .values(issuer=issuer, year=year, last=0))  # fmt: skip
    stmt = select(counters.c.last).where(and_(counters.c.issuer == issuer, counters.c.year == year))
    return int(conn.execute(stmt.with_for_update()).scalar_one())


def save_counter(conn: Connection, issuer: str, year: int, last: int) -> None:
    conn.execute(
        update(counters)
        .where(and_(counters.c.issuer == issuer, counters.c.year == year))
        .values(last=last)
    )


def run_done(conn: Connection, period: Period) -> bool:
    stmt = select(runs.c.period).where(runs.c.period == str(period))
    return conn.execute(stmt).first() is not None


def record_run(conn: Connection, period: Period, now: datetime) -> None:
    conn.execute(insert(runs).values(period=str(period), created_at=now))


@dataclass(frozen=True)
class Billable:
    id: str
    flags: Any
    currency: str
    existed: bool


def billable_customers(conn: Connection, period: Period, end: datetime) -> list[Billable]:
    """Customers with no bill for ``period`` or a later one; ``existed``: created before
    ``end`` (one created later is billed only if its account has entries before ``end``)."""
    later = select(bills.c.customer_id).where(bills.c.period >= str(period))
    stmt = (
        select(customers.c.id, customers.c.flags, customers.c.created_at, accounts.c.currency)
        .join(accounts, accounts.c.id == customers.c.id)
        .where(customers.c.id.not_in(later))
        .order_by(customers.c.id)
    )
    return [Billable(r.id, r.flags, r.currency, r.created_at < end) for r in conn.execute(stmt)]


@dataclass(frozen=True)
class History:
    first: Period
    balance: int  # after the latest bill
    billed: Totals


def histories(conn: Connection, customer_ids: Iterable[str]) -> dict[str, History]:
    """Per customer with bills: its first period, its latest balance, and what its bills
    stated per line key and month."""
    wanted = sorted(set(customer_ids))
    out: dict[str, History] = {}
    for i in range(0, len(wanted), CHUNK):
        part = wanted[i : i + CHUNK]
        firsts: dict[str, tuple[str, str, int]] = {}
        stmt = (
            select(bills.c.customer_id, bills.c.period, bills.c.balance)
            .where(bills.c.customer_id.in_(part))
            .order_by(bills.c.customer_id, bills.c.period)
        )
        for customer, period, balance in conn.execute(stmt):
            first = firsts.get(customer, (period, period, 0))[0]
            firsts[customer] = (first, period, int(balance))
        billed: dict[str, Totals] = {}
        stmt2 = (
            select(
                bills.c.customer_id,
                bill_lines.c.kind,
                bill_lines.c.for_period,
                bill_lines.c.service,
                bill_lines.c.provider_id,
                bill_lines.c.tier,
                bill_lines.c.unit,
                func.sum(bill_lines.c.quantity),
                func.sum(bill_lines.c.amount),
            )
            .join(bills, bills.c.id == bill_lines.c.bill_id)
            .where(bills.c.customer_id.in_(part))
            .group_by(
                bills.c.customer_id,
                bill_lines.c.kind,
                bill_lines.c.for_period,
                bill_lines.c.service,
                bill_lines.c.provider_id,
                bill_lines.c.tier,
                bill_lines.c.unit,
            )
        )
        for row in conn.execute(stmt2):
            customer, kind, month, service, provider, tier, unit, quantity, amount = row
            key = None if kind == "payment" else LineKey(service, provider, tier, unit)
            slot = (key, Period.parse(month))
            totals = billed.setdefault(customer, {})
            q, a = totals.get(slot, (0, 0))
            totals[slot] = (q + int(quantity), a + int(amount))
        for customer, (first, _, balance) in firsts.items():
            out[customer] = History(Period.parse(first), balance, billed.get(customer, {}))
    return out


def insert_bill(conn: Connection, draft: Draft, now: datetime) -> int:
    values = {"number": draft.number, "issuer": draft.issuer, "customer_id": draft.customer,
              "period": str(draft.period), "currency": draft.currency, "billing": draft.billing,
              "charges": draft.charges, "payments": draft.payments,
              "balance_forward": draft.balance_forward, "balance": draft.balance,
              "amount_due": draft.amount_due, "due_date": draft.due_date,
              "reference": draft.reference, "scan_line": draft.scan_line,
              "status": draft.status, "issued_at": now}  # fmt: skip
    bill_id = int(conn.execute(insert(bills).values(values).returning(bills.c.id)).scalar_one())
    rows = [
        {"bill_id": bill_id, "position": n, "kind": line.kind, "for_period": str(line.for_period),
         "service": line.key.service if line.key else "",
         "provider_id": line.key.provider if line.key else "",
         "tier": line.key.tier if line.key else "", "unit": line.key.unit if line.key else "",
         "quantity": line.quantity, "rate": line.rate, "amount": line.amount}
        for n, line in enumerate(draft.lines)
    ]  # fmt: skip
    if rows:
        conn.execute(insert(bill_lines), rows)
    return bill_id


def bill_ids_for(conn: Connection, period: Period) -> list[int]:
    stmt = select(bills.c.id).where(bills.c.period == str(period)).order_by(bills.c.id)
    return [int(i) for i in conn.execute(stmt).scalars()]


def get_bill(conn: Connection, bill_id: int) -> tuple[Any, list[Any]] | None:
    """The bill row and its lines in order, or None."""
    row = conn.execute(select(bills).where(bills.c.id == bill_id)).first()
    if row is None:
        return None
    stmt = select(bill_lines).where(bill_lines.c.bill_id == bill_id).order_by(bill_lines.c.position)
    return row, list(conn.execute(stmt))


def customer_bills(conn: Connection, customer_id: str) -> list[Any]:
    stmt = (
        select(bills)
        .where(bills.c.customer_id == customer_id)
        .order_by(bills.c.period.desc(), bills.c.id.desc())
    )
    return list(conn.execute(stmt))


def bill_event(conn: Connection, bill_id: int, draft: Draft, now: datetime) -> dict[str, Any]:
    """Record the bill's ``bill_issued`` event (in the bill's transaction); the event as the
    notification channels send it."""
    data = {"bill": bill_id, "number": draft.number, "customer": draft.customer,
            "period": str(draft.period), "status": draft.status,
            "amount_due": draft.amount_due, "currency": draft.currency}  # fmt: skip
    reason = f"bill {draft.number} for {draft.customer}, {draft.period}"
    event_id = conn.execute(insert(events).values(kind="bill_issued", meter_id=None, reason=reason,
                                                  at=now, data=data)
                            .returning(events.c.id)).scalar_one()  # fmt: skip
    return {"id": int(event_id), "kind": "bill_issued", "meter": None, "reason": reason,
            "at": now.isoformat(), "data": data}  # fmt: skip
