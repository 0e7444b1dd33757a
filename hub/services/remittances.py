"""Paper remittances (claims 9, 40): ``POST /remittances`` takes the scan lines an OCR scanner
read from paper stubs, one per line. Each line is checked alone (``hub.payments.stubs``: the
Luhn check digit, via python-stdnum), its bill found by the year, number and RF check digits
(the bill's reference validated with ``stdnum.iso11649``), and the stub's amount credited to the
bill's customer and allocated by the policy. A stub is paid at most once: its digits are the
payment's key (``remittance:<digits>``, also the top-up's idempotency key), so the same stub
again, in the same file or a later one, is rejected as a duplicate naming the payment that paid
it.

The whole file is one write transaction with a savepoint per line, so a rejected line leaves
nothing behind and the others still count. Stubs pay postpaid bills only, whose customers
consume against a receivable: credit control has nothing to do after them (hub/billing).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from sqlmodel import Session

from hub.billing.settings import BillingSettings
from hub.db import run_tx
from hub.errors import HubError
from hub.ledger.topups import post_topup
from hub.models import utcnow
from hub.payments import bills, store
from hub.payments.policy import Policy
from hub.payments.receive import Source, record
from hub.payments.stubs import read_stub
from hub.services.runtime import Runtime

MAX_LINES = 10_000


def remit(rt: Runtime, text: str) -> dict[str, Any]:
    """``{"accepted": [{"line", "bill", "payment"}], "rejected": [{"line", "reason"}]}``;
    lines are numbered from 1, blank lines skipped."""
    lines = [(n, x) for n, x in enumerate(text.splitlines()[:MAX_LINES], start=1) if x.strip()]
    rules = BillingSettings().rules

    def work(session: Session) -> dict[str, Any]:
        conn = session.connection()
        accepted: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        for number, line in lines:
            try:
                with conn.begin_nested():
                    accepted.append({"line": number, **_pay(conn, line, rules)})
            except (ValueError, HubError) as exc:
                reason = exc.message if isinstance(exc, HubError) else str(exc)
                rejected.append({"line": number, "reason": reason})
        return {"accepted": accepted, "rejected": rejected}

    report = run_tx(rt.engine, work)
    rt.metrics.inc("remittance_payments", len(report["accepted"]))
    rt.metrics.inc("remittance_rejections", len(report["rejected"]))
    return report


def _pay(conn: Connection, line: str, rules: Policy) -> dict[str, Any]:
    stub = read_stub(line)
    key = f"remittance:{stub.key}"
    paid = store.find(conn, key)
    if paid is not None:
        raise ValueError(f"duplicate stub: already paid by payment {paid.id}")
    bill = bills.by_number(conn, stub.year, stub.seq, stub.check_digits)
    if bill is None:
        raise ValueError("unknown reference")
    result = post_topup(conn, bill.customer_id, stub.amount, idempotency_key=key,
                        reference=f"remittance {bill.number}")  # fmt: skip
    request = {"line": line.strip(), "bill": int(bill.id), "reference": bill.reference,
               "amount": stub.amount}  # fmt: skip
    payment = record(conn, Source("remittance", key, request, int(bill.id)), result, rules,
                     utcnow())  # fmt: skip
    if not result.created:
        raise ValueError(f"duplicate stub: already paid by payment {payment}")
    return {"bill": int(bill.id), "payment": payment}
