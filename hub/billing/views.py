"""Bills as documents (I/O + formatting): what ``GET /bills/{id}``, the HTML and PDF show.
Money as decimal strings in major units; quantities in their displayed unit."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from hub.billing import store
from hub.billing.lines import UNIT_SCALE, display_quantity
from hub.billing.periods import Period
from hub.billing.printsites import delivery_entries
from hub.billing.profiles import profile_of
from hub.billing.render import Window, bill_html, usage_chart
from hub.errors import NotFoundError
from hub.models import Customer, table
from hub.payments.policy import OpenBill
from hub.payments.store import open_bills
from protocol.money import to_major

_customers = table(Customer)


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
        "reference": row.reference, "scan_line": row.scan_line, "status": status_of(conn, row),
        "issued_at": row.issued_at.isoformat(),
        "delivery": delivery_entries(conn, int(row.id), cur),
    }  # fmt: skip


def status_of(conn: Connection, row: Any, owing: Sequence[OpenBill] | None = None) -> str:
    """An open bill is ``paid`` once allocations (hub.payments) settled it and every bill
    before it; bills themselves are never updated. ``owing``: the customer's open bills
    (``hub.payments.store.open_bills``), read here when not given."""
    if row.status != "open":
        return str(row.status)
    owing = open_bills(conn, row.customer_id) if owing is None else owing
    return "paid" if all(b.period > row.period for b in owing) else "open"


def bill_summaries(conn: Connection, customer_id: str) -> list[dict[str, Any]]:
    """The customer's bills, newest first (what they still owe read once for all of them)."""
    owing = open_bills(conn, customer_id)
    return [
        {"id": int(r.id), "number": r.number, "period": r.period,
         "charges": to_major(int(r.charges), r.currency),
         "amount_due": to_major(int(r.amount_due), r.currency),
         "status": status_of(conn, r, owing)}
        for r in store.customer_bills(conn, customer_id)
    ]  # fmt: skip


def bill_owner(conn: Connection, bill_id: int) -> str:
    found = store.get_bill(conn, bill_id)
    if found is None:
        raise NotFoundError("bill", bill_id)
    return str(found[0].customer_id)


def usage_by_month(conn: Connection, customer_id: str, period: Period) -> dict[str, dict[str, Any]]:
    """Usage per metered service and month, for the 12 months up to ``period``, from the
    customer's bills (each provider's line carries the service's quantity: the largest is it)."""
    first = period
    for _ in range(11):
        first = first.previous()
    per: dict[tuple[str, str, str], int] = {}
    stmt = (
        select(
            store.bill_lines.c.service,
            store.bill_lines.c.provider_id,
            store.bill_lines.c.for_period,
            store.bill_lines.c.unit,
            store.bill_lines.c.quantity,
        )
        .join(store.bills, store.bills.c.id == store.bill_lines.c.bill_id)
        .where(
            and_(
                store.bills.c.customer_id == customer_id,
                store.bills.c.period <= str(period),
                store.bill_lines.c.for_period >= str(first),
                store.bill_lines.c.unit.in_(("kWh", "m3")),
            )
        )
    )
    for service, provider, month, unit, quantity in conn.execute(stmt):
        slot = (f"{service} ({unit})", provider, month)
        per[slot] = per.get(slot, 0) + int(quantity)
    out: dict[str, dict[str, Any]] = {}
    for (service, _, month), quantity in per.items():
        value = Decimal(quantity) / UNIT_SCALE["kWh"]
        months = out.setdefault(service, {})
        months[month] = max(months.get(month, Decimal(0)), value)
    return out


def bill_page(conn: Connection, bill_id: int, *, window: bool = False) -> str:
    """The bill as an HTML page (the PDF is made from the same page); ``window``: with the
    address block of a DL window envelope, for printing (``render.Window``)."""
    bill = bill_document(conn, bill_id)
    period = Period.parse(bill["period"])
    months = [period]
    for _ in range(11):
        months.insert(0, months[0].previous())
    chart = usage_chart([str(m) for m in months], usage_by_month(conn, bill["customer"], period))
    name = conn.execute(select(_customers.c.name)
                        .where(_customers.c.id == bill["customer"])).scalar()  # fmt: skip
    fields = profile_of(conn, bill["customer"])["fields"]
    address = ", ".join(fields[f]["value"] for f in ("address", "postal_code", "country")
                        if f in fields)  # fmt: skip
    customer_name = str(name or bill["customer"])
    envelope = None
    if window:
        envelope = Window.of(issuer=bill["number"].split("-")[0], notes=f"Bill {bill['number']}",
                             name=customer_name, address=fields.get("address", {}).get("value", ""),
                             postal_code=fields.get("postal_code", {}).get("value", ""),
                             country=fields.get("country", {}).get("value", ""))  # fmt: skip
    return bill_html(bill, customer_name=customer_name, address=address or None, chart=chart,
                     window=envelope)  # fmt: skip
