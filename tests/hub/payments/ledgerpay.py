"""Payments straight into a real ledger for payment tests: a top-up posted and recorded as a
payment, allocated by the policy, in one transaction (what ``hub.services.topups`` does)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from hub.billing.customers import set_billing
from hub.db import read_tx, run_tx
from hub.ledger import check_invariants, post_topup
from hub.models import utcnow
from hub.payments.policy import policy
from hub.payments.receive import Source, record
from hub.payments.views import payment_document


def postpaid(engine: Engine, customer: str) -> None:
    run_tx(engine, lambda s: set_billing(s, customer, "postpaid"))


def pay(engine: Engine, customer: str, amount: int, key: str, *, version: str = "1",
        at: datetime | None = None) -> int:  # fmt: skip
    """The payment's id; ``at``: when the ledger says the cash came in (default now)."""

    def work(session: Session) -> int | None:
        result = post_topup(session, customer, amount, idempotency_key=key, effective_at=at)
        return record(session.connection(), Source(), result, policy(version), utcnow())

    paid = run_tx(engine, work)
    assert paid is not None
    return paid


def document(engine: Engine, payment_id: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        return payment_document(conn, payment_id)


def invariants(engine: Engine) -> dict[str, Any]:
    with read_tx(engine) as conn:
        report = check_invariants(conn)
    return {k: v["detail"] for k, v in report["checks"].items() if not v["ok"]}
