"""Paper remittances (claims 9, 40): ``POST /remittances`` takes the scan lines an OCR scanner
read from paper stubs, one per line. Each line is checked alone (``hub.payments.stubs``: the
Luhn check digit, via python-stdnum), its bill found by the year, number and RF check digits
(the bill's reference validated with ``stdnum.iso11649``), and the stub's amount credited to the
bill's customer and allocated by the policy, in a transaction of its own. A stub is paid at most
once: its digits are the payment's key (``remittance:<digits>``), so the same stub again, in the
same file or a later one, is rejected as a duplicate naming the payment that paid it."""

from __future__ import annotations

from typing import Any

from hub.db import read_tx
from hub.errors import HubError
from hub.money import major
from hub.payments import bills, store
from hub.payments.receive import Source
from hub.payments.stubs import read_stub
from hub.services.runtime import Runtime
from hub.services.topups import topup

MAX_LINES = 10_000


def remit(rt: Runtime, text: str) -> dict[str, Any]:
    """``{"accepted": [{"line", "bill", "payment"}], "rejected": [{"line", "reason"}]}``;
    lines are numbered from 1, blank lines skipped."""
    accepted: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines()[:MAX_LINES], start=1):
        if not line.strip():
            continue
        try:
            accepted.append({"line": number, **_pay(rt, line)})
        except (ValueError, HubError) as exc:
            reason = exc.message if isinstance(exc, HubError) else str(exc)
            rejected.append({"line": number, "reason": reason})
    rt.metrics.inc("remittance_lines", len(accepted) + len(rejected))
    return {"accepted": accepted, "rejected": rejected}


def _pay(rt: Runtime, line: str) -> dict[str, Any]:
    stub = read_stub(line)
    key = f"remittance:{stub.key}"
    with read_tx(rt.engine) as conn:
        paid = store.find(conn, key)
        if paid is not None:
            raise ValueError(f"duplicate stub: already paid by payment {paid.id}")
        bill = bills.by_number(conn, stub.year, stub.seq, stub.check_digits)
    if bill is None:
        raise ValueError("unknown reference")
    request = {"line": line.strip(), "bill": int(bill.id), "reference": bill.reference,
               "amount": stub.amount}  # fmt: skip
    result = topup(
        rt,
        bill.customer_id,
        major(stub.amount, bill.currency),
        reference=f"remittance {bill.number}",
        idempotency_key=key,
        received=Source("remittance", key, request, int(bill.id)),
        capped=False,
    )
    if not result.created:
        raise ValueError(f"duplicate stub: already paid by payment {result.payment}")
    return {"bill": int(bill.id), "payment": result.payment}
