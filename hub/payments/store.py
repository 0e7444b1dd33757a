"""Payments in the database (I/O, inside the caller's transaction): payment records, what open
bills still owe each provider, allocations and verifications."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.engine import Connection

from hub.billing.store import bill_lines, bills
from hub.ledger.sql import insert_ignore
from hub.models import PaymentAllocation, PaymentRecord, PaymentVerification, table
from hub.payments.policy import Due, OpenBill

payments = table(PaymentRecord)
allocations = table(PaymentAllocation)
verifications = table(PaymentVerification)

PENDING, CREDITED, REFUSED = "pending", "credited", "refused"


def find(conn: Connection, source_key: str) -> Any:
    return conn.execute(select(payments).where(payments.c.source_key == source_key)).first()


def get(conn: Connection, payment_id: int, *, lock: bool = False) -> Any:
    stmt = select(payments).where(payments.c.id == payment_id)
    return conn.execute(stmt.with_for_update() if lock else stmt).first()


def by_entry(conn: Connection, entry_id: int) -> Any:
    return conn.execute(select(payments).where(payments.c.entry_id == entry_id)).first()


def insert_payment(conn: Connection, values: Mapping[str, Any]) -> int:
    stmt = insert(payments).values(dict(values)).returning(payments.c.id)
    return int(conn.execute(stmt).scalar_one())


def insert_once(conn: Connection, values: Mapping[str, Any]) -> bool:
    """Insert a payment unless its ``source_key`` exists (a concurrent one wins): inserted?"""
    stmt = insert_ignore(conn, payments, ["source_key"]).values(dict(values))
    return bool(conn.execute(stmt.returning(payments.c.id)).scalar_one_or_none())


def mark_credited(
    conn: Connection, payment_id: int, *, entry_id: int, credit: int, policy: str, now: datetime
) -> None:
    conn.execute(update(payments).where(payments.c.id == payment_id)
                 .values(status=CREDITED, entry_id=entry_id, credit=credit, policy=policy,
                         credited_at=now))  # fmt: skip


def mark_refused(conn: Connection, payment_id: int) -> None:
    conn.execute(update(payments).where(payments.c.id == payment_id).values(status=REFUSED))


def open_bills(conn: Connection, customer_id: str) -> list[OpenBill]:
    """The customer's postpaid bills still owed something, with what each provider is still
    owed: its charge
    and adjustment lines on the bill (a negative total counts as nothing owed) less what was
    allocated to it."""
    rows = conn.execute(
        select(bills.c.id, bills.c.period, bill_lines.c.provider_id, bill_lines.c.tier,
               func.sum(bill_lines.c.amount))
        .join(bill_lines, bill_lines.c.bill_id == bills.c.id)
        .where(and_(bills.c.customer_id == customer_id, bills.c.billing == "postpaid",
                    bill_lines.c.kind != "payment"))
        .group_by(bills.c.id, bills.c.period, bill_lines.c.provider_id, bill_lines.c.tier)
    ).all()  # fmt: skip
    paid = allocated(conn, {int(r[0]) for r in rows})
    per_bill: dict[int, tuple[str, list[Due]]] = {}
    for bill_id, period, provider, tier, charged in rows:
        left = max(0, int(charged)) - paid.get((int(bill_id), provider), 0)
        slot = per_bill.setdefault(int(bill_id), (period, []))
        if left > 0:
            slot[1].append(Due(provider, tier, left))
    return [OpenBill(b, p, tuple(d)) for b, (p, d) in sorted(per_bill.items()) if d]


def allocated(conn: Connection, bill_ids: set[int]) -> dict[tuple[int, str], int]:
    """Allocated so far per (bill, provider)."""
    if not bill_ids:
        return {}
    stmt = (
        select(allocations.c.bill_id, allocations.c.provider_id, func.sum(allocations.c.amount))
        .where(allocations.c.bill_id.in_(sorted(bill_ids)))
        .group_by(allocations.c.bill_id, allocations.c.provider_id)
    )
    return {(int(b), p): int(v) for b, p, v in conn.execute(stmt)}


def credits_left(conn: Connection, customer_id: str) -> list[tuple[int, int]]:
    """(payment id, credit not yet applied) of the customer's credited payments, oldest first."""
    spent = (
        select(allocations.c.payment_id, func.sum(allocations.c.amount).label("spent"))
        .group_by(allocations.c.payment_id)
        .subquery()
    )
    stmt = (
        select(payments.c.id, payments.c.amount - func.coalesce(spent.c.spent, 0))
        .outerjoin(spent, spent.c.payment_id == payments.c.id)
        .where(and_(payments.c.account_id == customer_id, payments.c.status == CREDITED,
                    payments.c.credit > 0))
        .order_by(payments.c.id)
    )  # fmt: skip
    return [(int(i), int(v)) for i, v in conn.execute(stmt) if v > 0]


def insert_allocations(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(allocations), rows)


def allocations_of(conn: Connection, payment_id: int) -> list[Any]:
    stmt = select(allocations).where(allocations.c.payment_id == payment_id)
    return list(conn.execute(stmt.order_by(allocations.c.id)))


def record_verification(
    conn: Connection, payment_id: int, verifier: str, outcome: str, *, detail: str, now: datetime
) -> None:
    values = {"payment_id": payment_id, "verifier": verifier[:80], "outcome": outcome,
              "detail": detail[:500], "at": now}  # fmt: skip
    conn.execute(insert(verifications).values(values))


def verifications_of(conn: Connection, payment_id: int) -> list[Any]:
    stmt = select(verifications).where(verifications.c.payment_id == payment_id)
    return list(conn.execute(stmt.order_by(verifications.c.id)))


def pending(conn: Connection, limit: int = 500) -> list[Any]:
    stmt = select(payments).where(payments.c.status == PENDING).order_by(payments.c.id)
    return list(conn.execute(stmt.limit(limit)))


def credited_between(conn: Connection, channel: str, source: str, start: datetime,
                     end: datetime) -> list[Any]:  # fmt: skip
    """Credited payments of a channel whose request names ``source`` (a network), in order."""
    stmt = (
        select(payments)
        .where(and_(payments.c.channel == channel, payments.c.status == CREDITED,
                    payments.c.credited_at >= start, payments.c.credited_at < end))
        .order_by(payments.c.id)
    )  # fmt: skip
    return [r for r in conn.execute(stmt) if (r.request or {}).get("network") == source]
