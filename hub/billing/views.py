"""Bills as documents (I/O + formatting): what ``GET /bills/{id}``, the HTML and PDF show.
Money as decimal strings in major units; quantities in their displayed unit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

from hub.billing import store
from hub.billing.lines import display_quantity
from hub.errors import NotFoundError
from protocol.money import to_major


def bill_document(conn: Connection, bill_id: int) -> dict[str, Any]:
    """The bill with its lines; NotFoundError for an unknown id. Payment lines (what the
    bill counted as paid, per month) are under ``payment_lines``, not ``lines``."""
    found = store.get_bill(conn, bill_id)
    if found is None:
        raise NotFoundError("bill", bill_id)
    row, rows = found
    cur = row.currency

    def line(r: Any) -> dict[str, Any]:
        return {"service": r.service, "provider": r.provider_id, "tier": r.tier,
                "quantity": display_quantity(int(r.quantity), r.unit), "unit": r.unit,
                "rate": r.rate, "amount": to_major(int(r.amount), cur), "kind": r.kind,
                "for_period": r.for_period}  # fmt: skip

    return {
        "id": int(row.id), "number": row.number, "customer": row.customer_id,
        "period": row.period, "currency": cur, "billing": row.billing,
        "lines": [line(r) for r in rows if r.kind != "payment"],
        "payment_lines": [{"for_period": r.for_period, "amount": to_major(int(r.amount), cur)}
                          for r in rows if r.kind == "payment"],
        "charges": to_major(int(row.charges), cur), "payments": to_major(int(row.payments), cur),
        "balance_forward": to_major(int(row.balance_forward), cur),
        "balance": to_major(int(row.balance), cur),
        "amount_due": to_major(int(row.amount_due), cur),
        "due_date": row.due_date.isoformat() if row.due_date else None,
        "reference": row.reference, "scan_line": row.scan_line, "status": row.status,
        "issued_at": row.issued_at.isoformat(), "delivery": [],
    }  # fmt: skip


def bill_summaries(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The customer's bills, newest first."""
    return [
        {"id": int(r.id), "number": r.number, "period": r.period,
         "charges": to_major(int(r.charges), r.currency),
         "amount_due": to_major(int(r.amount_due), r.currency), "status": r.status}
        for r in store.customer_bills(conn, customer_id)
    ]  # fmt: skip


def bill_owner(conn: Connection, bill_id: int) -> str:
    found = store.get_bill(conn, bill_id)
    if found is None:
        raise NotFoundError("bill", bill_id)
    return str(found[0].customer_id)
