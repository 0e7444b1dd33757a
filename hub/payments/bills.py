"""Bills as payers name them (I/O): by RF reference (bill-payment networks) or by scan line
(paper stubs), and what paying one takes (its open dues and every older bill's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection
from stdnum import iso11649

from hub.billing.store import bills
from hub.errors import InvalidInputError, NotFoundError
from hub.payments import store


def by_reference(conn: Connection, reference: str) -> Any:
    """The bill of an RF creditor reference (spaces and case as printed are fine).
    InvalidInputError for wrong check digits, NotFoundError for an unknown one."""
    compact = iso11649.compact(reference)
    if not iso11649.is_valid(compact):
        raise InvalidInputError("reference", "not an RF creditor reference (check digits)")
    row = conn.execute(select(bills).where(bills.c.reference == compact)).first()
    if row is None:
        raise NotFoundError("reference", compact)
    return row


def by_number(conn: Connection, year: int, seq: int, check_digits: str) -> Any:
    """The bill a scan line names (year, sequence number and the RF check digits), or None."""
    tail = f"{year:04d}{seq:06d}"
    stmt = select(bills).where(and_(bills.c.reference.like(f"RF{check_digits}%{tail}")))
    for row in conn.execute(stmt):
        if str(row.reference).endswith(tail) and iso11649.is_valid(row.reference):
            return row
    return None


def outstanding(conn: Connection, bill: Any) -> int:
    """What paying this bill takes: the dues still open on it and on every older bill."""
    return sum(d.remaining for b in store.open_bills(conn, bill.customer_id)
               if b.period <= bill.period for d in b.dues)  # fmt: skip
