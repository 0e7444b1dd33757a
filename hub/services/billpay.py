"""Bill-payment networks (claim 14, BBPS / BPAY style): a network fetches a bill by its RF
reference, posts a payment of it, and reconciles a day.

A network calls with its own ``billpay`` key (``smsa-hub create-key --role billpay --network
ID``), bound to its account ``billpay:<network>``: a payment's cash comes in through that
account (the network owes it until it settles). A payment is idempotent on the network's
transaction id: the same ``network_txn`` again with the same body gets the same answer and
moves nothing; with another body, 409. A verifier configured for ``billpay:<network>``
(``hub.payments.verify``) must confirm it first: a signature over the raw body (checked before
anything is recorded: 401 and nothing kept) or the network's verification URL (the payment is
held pending until it confirms). Without one, the network's key is what authenticated it.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints
from sqlalchemy import and_, func, select
from stdnum import iso11649

from hub.billing.settings import BillingSettings
from hub.billing.views import status_of
from hub.db import read_tx
from hub.errors import ConflictError
from hub.ledger.sql import entries, lines
from hub.models import Customer, EntryKind, table
from hub.money import major, parse_amount
from hub.payments import bills, store
from hub.payments.receive import Source
from hub.payments.settings import PaymentSettings
from hub.payments.verify import SignatureVerifier, UrlVerifier
from hub.services.held import confirm, credit_held, held
from hub.services.payments import MAX_BODY, SignatureError
from hub.services.runtime import Runtime
from hub.strictjson import parse_body

_customers = table(Customer)


class BillpayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reference: Annotated[str, StringConstraints(min_length=5, max_length=40)]
    amount: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,13}(\.[0-9]{1,12})?$")]
    network_txn: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:\-]{1,80}$")]
    paid_at: AwareDatetime


def account_of(network: str) -> str:
    return f"billpay:{network}"


def fetch(rt: Runtime, reference: str) -> dict[str, Any]:
    """``GET /billpay/bills?reference=``: the bill and what paying it takes now."""
    with read_tx(rt.engine) as conn:
        row = bills.by_reference(conn, reference)
        name = conn.execute(select(_customers.c.name)
                            .where(_customers.c.id == row.customer_id)).scalar()  # fmt: skip
        return {"reference": row.reference, "bill": int(row.id), "number": row.number,
                "customer_name": name, "currency": row.currency, "period": row.period,
                "amount_due": major(bills.outstanding(conn, row), row.currency),
                "due_date": row.due_date.isoformat() if row.due_date else None,
                "status": status_of(conn, row)}  # fmt: skip


def pay(rt: Runtime, network: str, key_id: int, body: bytes, signature: str | None
        ) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """``POST /billpay/payments``: ``(answer, credited)``; ``credited`` False: held pending."""
    verifier = PaymentSettings().verifier(account_of(network))
    if isinstance(verifier, SignatureVerifier) and not verifier.check(body, signature):
        rt.metrics.inc("billpay_bad_signatures")
        raise SignatureError(f"bad or missing X-Signature from network {network!r}")
    payment = _parse(body)
    key = f"billpay:{network}:{payment.network_txn}"
    with read_tx(rt.engine) as conn:
        existing = store.find(conn, key)
        bill = None if existing is not None else bills.by_reference(conn, payment.reference)
        status = None if bill is None else status_of(conn, bill)
        if bill is not None and status != "open":
            raise ConflictError(f"bill {bill.number} ({bill.reference}) has nothing to pay: "
                                f"it is {status}")  # fmt: skip
    minor = parse_amount("amount", payment.amount, rt.currency)
    request = {"network": network, "network_txn": payment.network_txn,
               "reference": iso11649.compact(payment.reference), "amount": minor,
               "paid_at": payment.paid_at.isoformat(),
               "txn": [f"billpay.{network}", payment.network_txn],
               "source_account": account_of(network)}  # fmt: skip
    if existing is not None:
        if dict(existing.request or {}) != request:
            raise ConflictError(f"network_txn {payment.network_txn!r} was paid with another "
                                f"reference, amount or time (payment {existing.id})")  # fmt: skip
        rt.metrics.inc("billpay_replays")
        return answer(existing), existing.status == store.CREDITED
    assert bill is not None
    row, _ = held(rt, bill.customer_id, minor,
                  Source("billpay", key, request, int(bill.id)))  # fmt: skip
    if isinstance(verifier, UrlVerifier):
        row = confirm(rt, int(row.id), verifier)
    elif row.status == store.PENDING:
        by = ((verifier.name, "X-Signature over the body") if verifier is not None
              else (f"billpay-key:{key_id}", f"the API key of network {network}"))  # fmt: skip
        row = credit_held(rt, row, by)
    rt.metrics.inc("billpay_payments")
    return answer(row), row.status == store.CREDITED


def answer(row: Any) -> dict[str, Any]:
    req = row.request or {}
    return {"payment": int(row.id), "bill": row.bill_id, "reference": req.get("reference"),
            "amount": major(int(row.amount), row.currency), "currency": row.currency,
            "network_txn": req.get("network_txn"), "paid_at": req.get("paid_at"),
            "status": row.status}  # fmt: skip


def _parse(body: bytes) -> BillpayIn:
    return parse_body(body, BillpayIn, MAX_BODY)  # a repeated key: 422 naming it


COLUMNS = ["payment", "network_txn", "reference", "bill", "amount", "paid_at", "credited_at",
           "entry"]  # fmt: skip


def reconciliation(rt: Runtime, network: str, day: date) -> str:
    """The network's payments credited on ``day`` (the hub's time zone) as CSV, one row each,
    then a ``total`` row (count and sum) and a ``ledger`` row: the day's top-up entries through
    ``billpay:<network>`` and what they took in, read from the journal. The two agree unless
    the ledger and the payments disagree."""
    zone = BillingSettings().zone
    start = datetime.combine(day, time(), zone)
    end = start + timedelta(days=1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    with read_tx(rt.engine) as conn:
        rows = store.credited_between(conn, "billpay", network, start, end)
        total = 0
        for r in rows:
            req = r.request or {}
            total += int(r.amount)
            writer.writerow([r.id, req.get("network_txn"), req.get("reference"), r.bill_id,
                             major(int(r.amount), r.currency), req.get("paid_at"),
                             r.credited_at.isoformat(), r.entry_id])  # fmt: skip
        count, taken = conn.execute(
            select(func.count(func.distinct(entries.c.id)),
                   func.coalesce(-func.sum(lines.c.amount), 0))
            .select_from(lines.join(entries, entries.c.id == lines.c.entry_id))
            .where(and_(lines.c.account_id == account_of(network),
                        entries.c.kind == EntryKind.TOPUP.value,
                        entries.c.effective_at >= start, entries.c.effective_at < end))
        ).one()  # fmt: skip
        cur = rt.currency
        writer.writerow(["total", len(rows), "", "", major(total, cur), "", "", ""])
        writer.writerow(["ledger", int(count), "", "", major(int(taken), cur), "", "", ""])
    return out.getvalue()
