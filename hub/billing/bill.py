"""A bill's figures from its lines (pure): charges, payments, balance, amount due, status,
number, payment reference and scan line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from hub.billing.lines import Line, sums
from hub.billing.periods import Period
from hub.billing.reference import bill_number, creditor_reference, scan_line

POSTPAID = "postpaid"
PREPAID = "prepaid"


def billing_of(flags: object) -> str:
    """A customer's billing (``flags["billing"]``): ``postpaid`` or, by default, ``prepaid``."""
    value = flags.get("billing") if isinstance(flags, dict) else None
    return POSTPAID if value == POSTPAID else PREPAID


@dataclass(frozen=True)
class Draft:
    number: str
    issuer: str
    customer: str
    period: Period
    currency: str
    billing: str
    lines: Sequence[Line]
    charges: int
    payments: int
    balance_forward: int
    balance: int
    amount_due: int
    due_date: date | None
    reference: str | None
    scan_line: str | None
    status: str


def make_bill(
    *,
    customer: str,
    period: Period,
    billing: str,
    currency: str,
    lines: Sequence[Line],
    balance_forward: int,
    issuer: str,
    year: int,
    seq: int,
    issued_on: date,
    due_days: int,
) -> Draft:
    """The bill. ``balance_forward``: what the customer owed after its previous bill (negative:
    in credit). A prepaid customer's bill is a statement (nothing due); a postpaid customer's
    is ``open`` with an amount due, a due date, a reference and a scan line, or ``paid``
    when nothing is owed."""
    total = sums(lines)
    balance = balance_forward + total.charges - total.payments
    reference = due = scan = None
    if billing == POSTPAID:
        amount_due = max(0, balance)
        status = "open" if amount_due else "paid"
        reference = creditor_reference(issuer, year, seq)
        scan = scan_line(reference, year, seq, amount_due)
        due = issued_on + timedelta(days=due_days)
    else:
        amount_due, status = 0, "statement"
    return Draft(bill_number(issuer, year, seq), issuer, customer, period, currency, billing,
                 list(lines), total.charges, total.payments, balance_forward, balance,
                 amount_due, due, reference, scan, status)  # fmt: skip
