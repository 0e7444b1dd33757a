"""Payments as documents (``GET /payments/{id}``): money as decimal strings in major units.
A credited payment's allocations plus its credit (what is still unallocated) equal its amount
exactly; a pending or refused one has neither."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from hub.errors import NotFoundError
from hub.payments import store
from protocol.money import to_major


def payment_owner(conn: Connection, payment_id: int) -> str:
    row = store.get(conn, payment_id)
    if row is None:
        raise NotFoundError("payment", payment_id)
    return str(row.account_id)


def payment_document(conn: Connection, payment_id: int) -> dict[str, Any]:
    row = store.get(conn, payment_id)
    if row is None:
        raise NotFoundError("payment", payment_id)
    cur = row.currency
    parts = store.allocations_of(conn, payment_id)
    spent = sum(int(p.amount) for p in parts)
    credit = int(row.amount) - spent if row.status == store.CREDITED else 0
    return {
        "id": int(row.id), "account": row.account_id, "amount": to_major(int(row.amount), cur),
        "currency": cur, "channel": row.channel, "status": row.status, "policy": row.policy,
        "bill": row.bill_id,
        "allocations": [{"bill": int(p.bill_id), "provider": p.provider_id, "tier": p.tier,
                         "amount": to_major(int(p.amount), cur), "source": p.source,
                         "at": p.at.isoformat()} for p in parts],
        "credit": to_major(credit, cur),
        "verifications": [{"verifier": v.verifier, "outcome": v.outcome, "detail": v.detail,
                           "at": v.at.isoformat()}
                          for v in store.verifications_of(conn, payment_id)],
        "received_at": row.received_at.isoformat(),
        "credited_at": row.credited_at.isoformat() if row.credited_at else None,
    }  # fmt: skip


def pending_documents(conn: Connection) -> list[dict[str, Any]]:
    """Payments held for a third party's confirmation, oldest first."""
    return [payment_document(conn, int(r.id)) for r in store.pending(conn)]
