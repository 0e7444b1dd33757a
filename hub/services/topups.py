"""The top-up use case: validate, post once (``hub.ledger.topups``), then credit control.

Debt recovery (``hub.control.recovery``) is posted in the top-up's own transaction, so a crash
cannot separate them. After the commit, credit control runs for the account
(``CreditControl.after_topup``): the notifications of that recovery (and the recovery itself
when it was not possible), the floor restored, ``reconnect`` for meters whose balance is back
above their threshold, the new credit state to every meter the account pays for and, for an
alternate account, draws for its customers below zero. Commands go out through the command
table (``queued`` until a hub with MQTT publishes them). That step is best-effort: a failure is
logged and counted, never raised, and never undoes or repeats the posting (the scheduler's
credit-control tick and the next credit state correct what was missed); a replayed top-up
triggers nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sqlmodel import Session

from hub.audit import key_actor, provider_actor, record_audit
from hub.billing.settings import BillingSettings
from hub.control.effects import Plan
from hub.db import run_tx
from hub.errors import InvalidInputError, NotFoundError
from hub.ledger.topups import ProviderTxn, TopupResult, post_topup
from hub.models import Account, AccountKind, utcnow
from hub.money import parse_amount
from hub.payments.receive import Source, record
from hub.services.runtime import Runtime

log = logging.getLogger(__name__)

TOPUP_KINDS = frozenset({AccountKind.CUSTOMER, AccountKind.ALTERNATE, AccountKind.SPONSOR})


def payable_account(session: Session, rt: Runtime, account_id: str, field: str) -> Account:
    """``account_id`` if it exists, takes payments (``TOPUP_KINDS``) and is in the hub's
    currency; else the one-line error naming ``field`` (or 404)."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFoundError("account", account_id)
    if AccountKind(account.kind) not in TOPUP_KINDS:
        raise InvalidInputError(field, f"a {account.kind} account takes no payment")
    if account.currency != rt.currency:
        raise InvalidInputError("currency", f"account is in {account.currency}")
    return account


def topup(
    rt: Runtime,
    account_id: str,
    amount: str,
    *,
    reference: str,
    idempotency_key: str | None = None,
    payment: ProviderTxn | None = None,
    currency: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    source_account_id: str | None = None,
    received: Source | None = None,
    capped: bool = True,
) -> TopupResult:
    """Validate and post a top-up of ``amount`` (decimal string) at most once per API
    ``idempotency_key`` (scoped to the account) or per provider ``payment`` (whatever the
    account); see ``hub.ledger.topups.post_topup``. In the same transaction the payment is
    recorded and allocated to the customer's open bills (``hub.payments``; ``received`` says
    where it came from, default an API top-up); ``result.payment`` is its id. ``capped``: the
    amount is limited to ``max_topup`` (not for a bill's payment)."""
    if currency is not None and currency != rt.currency:
        raise InvalidInputError("currency", f"this hub takes {rt.currency}, not {currency}")
    cap = rt.settings.max_topup_minor if capped else None
    minor = parse_amount("amount", amount, rt.currency, maximum=cap)
    rules = BillingSettings().rules

    def work(session: Session) -> tuple[TopupResult, Plan | None]:
        payable_account(session, rt, account_id, "path.account_id")
        result = post_topup(
            session,
            account_id,
            minor,
            idempotency_key=idempotency_key,
            payment=payment,
            reference=reference,
            metadata=metadata,
            source_account_id=source_account_id,
        )
        paid = record(session.connection(), received or Source(), result, rules, utcnow())
        result = replace(result, payment=paid)
        if not result.created:
            return result, None
        audit_topup(session, result, reference, payment, metadata)
        return result, rt.control.recover(session, account_id, result.entry_id)

    result, recovered = run_tx(rt.engine, work)
    if result.created:
        rt.metrics.inc("topups")
        rt.metrics.inc("postings")
        after_topup(rt, account_id, result.entry_id, recovered)
    else:
        rt.metrics.inc("topup_replays")
    return result


def audit_topup(
    session: Session,
    result: TopupResult,
    reference: str,
    payment: ProviderTxn | None,
    metadata: Mapping[str, Any] | None,
) -> None:
    """The ``topup`` audit event: caused by the payment provider's signed callback, or by the
    API key (or the command line) that posted it."""
    if payment is not None:
        actor = provider_actor(payment.provider)
        data: dict[str, Any] = {"by": "provider", "provider": payment.provider,
                                "transaction_id": payment.transaction_id}  # fmt: skip
    else:
        key_id = (metadata or {}).get("key_id")
        actor = key_actor(key_id)
        data = {"by": "api_key" if key_id is not None else "cli", "key_id": key_id}
    data |= {"account": result.account_id, "amount": result.amount, "currency": result.currency,
             "entry_id": result.entry_id, "reference": reference}  # fmt: skip
    record_audit(session, "topup", actor,
                 f"top-up of {result.amount} minor units to {result.account_id} by {actor}",
                 data)  # fmt: skip


def after_topup(rt: Runtime, account_id: str, entry_id: int, recovered: Plan | None = None) -> None:
    """Credit control after top-up ``entry_id`` committed (see the module docstring).
    ``recovered``: the plan of the debt recovery committed with the top-up (its events are
    stored; its notifications and commands go out here)."""
    try:
        actions = rt.control.dispatch(recovered) if recovered is not None else []
        actions += rt.control.after_topup(account_id, entry_id)
    except Exception:  # never fail a committed top-up over what follows it
        rt.metrics.inc("notify_errors")
        log.exception("top-up of %s (entry %d): credit control failed", account_id, entry_id)
        return
    for action in actions:
        rt.metrics.inc(f"control_{action.kind}")
