"""Payments held for a third party's confirmation (claim 15): hold once, ask the verifier
outside any transaction, credit only on a confirmation. See ``hub.payments.receive``."""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

from hub.db import read_tx, run_tx
from hub.errors import NotFoundError
from hub.ledger.topups import ProviderTxn
from hub.models import utcnow
from hub.money import major
from hub.payments import store
from hub.payments.receive import Source, hold
from hub.payments.verify import REFUSED, UrlVerifier
from hub.services.runtime import Runtime
from hub.services.topups import payable_account, topup

log = logging.getLogger(__name__)


def held(rt: Runtime, account_id: str, amount: int, source: Source) -> tuple[Any, bool]:
    """Record the payment pending (once per source key): ``(row, created)``."""

    def work(session: Session) -> tuple[Any, bool]:
        payable_account(session, rt, account_id, "account")
        return hold(session.connection(), account_id, rt.currency, amount, source, now=utcnow())

    return run_tx(rt.engine, work)


def credit_held(rt: Runtime, row: Any, verified_by: tuple[str, str]) -> Any:
    """Post a held payment's cash-in entry and allocation (at most once) and return its row.
    Its request says how: ``txn`` a provider's (or network's) transaction, else
    ``idempotency_key``; ``source_account`` where the cash comes from."""
    req = dict(row.request or {})
    txn = req.get("txn")
    topup(
        rt,
        row.account_id,
        major(int(row.amount), row.currency),
        reference=str(req.get("reference", "")),
        payment=ProviderTxn(txn[0], txn[1]) if txn else None,
        idempotency_key=None if txn else str(req.get("idempotency_key") or row.source_key),
        source_account_id=req.get("source_account"),
        received=Source(
            row.channel, row.source_key, req, row.bill_id, verified_by, pending_id=int(row.id)
        ),
        capped=False,
    )
    return current(rt, int(row.id))


def confirm(rt: Runtime, payment_id: int, verifier: UrlVerifier) -> Any:
    """Ask ``verifier`` about a pending payment; credit it when confirmed. A refusal marks it
    refused, an unavailable third party leaves it pending; neither moves money. A payment
    that is no longer pending is returned as it is."""
    row = current(rt, payment_id)
    if row.status != store.PENDING:
        return row
    claim = {"payment": int(row.id), "channel": row.channel, "account": row.account_id,
             "amount": major(int(row.amount), row.currency), "currency": row.currency,
             **{k: v for k, v in (row.request or {}).items() if k in ("network", "provider",
                "network_txn", "transaction_id", "reference", "paid_at")}}  # fmt: skip
    outcome = verifier.confirm(claim)
    if outcome.confirmed:
        return credit_held(rt, row, (verifier.name, outcome.detail))
    rt.metrics.inc("payments_unverified")
    log.warning("payment %d not confirmed by %s: %s %s", payment_id, verifier.name,
                outcome.outcome, outcome.detail)  # fmt: skip

    def work(session: Session) -> None:
        conn = session.connection()
        locked = store.get(conn, payment_id, lock=True)
        store.record_verification(conn, payment_id, verifier.name, outcome.outcome,
                                  detail=outcome.detail, now=utcnow())  # fmt: skip
        if outcome.outcome == REFUSED and locked.status == store.PENDING:
            store.mark_refused(conn, payment_id)

    run_tx(rt.engine, work)
    return current(rt, payment_id)


def current(rt: Runtime, payment_id: int) -> Any:
    with read_tx(rt.engine) as conn:
        row = store.get(conn, payment_id)
    if row is None:
        raise NotFoundError("payment", payment_id)
    return row
