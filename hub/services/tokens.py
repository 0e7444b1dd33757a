"""The token use cases: vend (the customer's own money, into ``tokens:<CUR>``) and cancel
(refund a token never redeemed), each in one transaction with the meter's new credit state
queued in it (the gateway learns the meter's token secret, the lower balance, or that a token
is refused). Settling a redeemed token is ingest's (``hub.tokens.settle``)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from hub.audit import key_actor, record_audit
from hub.commands.store import enqueue
from hub.control.credit_state import credit_command_for, credit_state
from hub.db import run_tx
from hub.errors import NotFoundError
from hub.models import Account
from hub.money import parse_amount
from hub.services.runtime import Runtime
from hub.tokens.store import T_TOKENS, Vended, cancel, vend
from protocol.tokens import MAX_TOKEN_VALUE

log = logging.getLogger(__name__)


def vend_token(
    rt: Runtime,
    account_id: str,
    amount: str,
    meter_id: str,
    idempotency_key: str,
    *,
    key_id: int | None = None,
) -> Vended:
    """See ``hub.tokens.store.vend``; ``amount`` a decimal string in major units; audited as
    ``token_vended`` by API key ``key_id`` (None: the command line)."""
    minor = parse_amount("amount", amount, rt.currency, maximum=MAX_TOKEN_VALUE)

    def work(session: Session) -> Vended:
        if session.get(Account, account_id) is None:
            raise NotFoundError("account", account_id)
        conn = session.connection()
        vended = vend(conn, account_id, meter_id, minor, idempotency_key)
        if vended.created:
            _queue_state(conn, meter_id, "token vended")
            record_audit(session, "token_vended", key_actor(key_id),
                         f"token {vended.id} of {minor} minor units vended from {account_id}",
                         {"by": "api_key" if key_id is not None else "cli", "key_id": key_id,
                          "token": vended.id, "account": account_id, "amount": minor,
                          "currency": vended.currency}, meter_id=meter_id)  # fmt: skip
        return vended

    vended = run_tx(rt.engine, work)
    rt.metrics.inc("tokens_vended" if vended.created else "token_replays")
    return vended


def cancel_token(rt: Runtime, token_id: str, *, key_id: int | None = None) -> Any:
    """Refund a token never redeemed; the row after it (see ``hub.tokens.store.cancel``);
    audited as ``token_cancelled`` by API key ``key_id`` (None: the command line)."""

    def work(session: Session) -> Any:
        conn = session.connection()
        before = conn.execute(select(T_TOKENS.c.status).where(T_TOKENS.c.id == token_id)).scalar()
        row = cancel(conn, token_id)
        if before == "vended":
            _queue_state(conn, row.meter_id, "token cancelled")
            m = row._mapping
            record_audit(session, "token_cancelled", key_actor(key_id),
                         f"token {token_id} cancelled, {m['amount']} minor units refunded",
                         {"by": "api_key" if key_id is not None else "cli", "key_id": key_id,
                          "token": token_id, "account": m["account_id"],
                          "amount": int(m["amount"]), "currency": m["currency"]},
                         meter_id=row.meter_id)  # fmt: skip
        return row

    return run_tx(rt.engine, work)


def get_token(rt: Runtime, token_id: str) -> Any:
    with rt.engine.connect() as conn:
        row = conn.execute(select(T_TOKENS).where(T_TOKENS.c.id == token_id)).first()
    if row is None:
        raise NotFoundError("token", token_id)
    return row


def _queue_state(conn: Any, meter_id: str, reason: str) -> None:
    try:
        credit = credit_state(conn, meter_id)
    except LookupError as exc:  # no tariff yet: the state goes out once there is one
        log.warning("no credit state for %s: %s", meter_id, exc)
        return
    enqueue(conn, credit.gateway_id, credit_command_for(credit, reason=reason))
