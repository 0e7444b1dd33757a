"""Receiving a payment (I/O): its record, its verification, and crediting it in the cash-in
entry's transaction (``hub.services.topups`` calls :func:`record`).

A payment that needs a third party's confirmation is first **held**: recorded ``pending`` once
per source key (the same source again with the same request is the same payment; with another
request, 409), with no money moved. :func:`hub.services.held.confirm` then asks the
verifier outside any transaction and credits it only on a confirmation; a refusal marks it
``refused`` and an unavailable third party leaves it pending for an operator to retry. Every
attempt is recorded with its verifier, outcome and time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from hub.errors import ConflictError
from hub.ledger.topups import TopupResult
from hub.payments import store
from hub.payments.allocate import credit_payment
from hub.payments.policy import Policy


@dataclass(frozen=True)
class Source:
    """Where a payment comes from. ``key`` None: an API top-up (``topup:<entry id>``)."""

    channel: str = "topup"  # topup | callback | remittance | billpay
    key: str | None = None
    request: Mapping[str, Any] = field(default_factory=dict)
    bill_id: int | None = None
    verified_by: tuple[str, str] | None = None  # (verifier, what it said) that confirmed it
    pending_id: int | None = None  # the held payment this credits


def record(conn: Connection, source: Source, result: TopupResult, rules: Policy,
           now: datetime) -> int | None:  # fmt: skip
    """The payment of a top-up just posted (or replayed: the first one's, if any), allocated."""
    if not result.created:
        row = store.by_entry(conn, result.entry_id)
        return int(row.id) if row is not None else None
    payment_id = source.pending_id
    if payment_id is None:
        payment_id = store.insert_payment(conn, {
            "account_id": result.account_id, "currency": result.currency,
            "amount": result.amount, "credit": 0, "channel": source.channel,
            "source_key": source.key or f"topup:{result.entry_id}",
            "request": dict(source.request), "status": store.PENDING,
            "bill_id": source.bill_id, "received_at": now,
        })  # fmt: skip
    if source.verified_by is not None:
        verifier, detail = source.verified_by
        store.record_verification(conn, payment_id, verifier, "confirmed", detail=detail, now=now)
    credit_payment(conn, payment_id, result.entry_id, rules, now)
    return payment_id


def hold(conn: Connection, account_id: str, currency: str, amount: int, source: Source, *,
         now: datetime) -> tuple[Any, bool]:  # fmt: skip
    """The payment of ``source.key``, recorded pending if new: ``(row, created)``.
    ConflictError when the key was used with another request."""
    key = source.key or ""
    created = store.insert_once(conn, {
        "account_id": account_id, "currency": currency, "amount": amount, "credit": 0,
        "channel": source.channel, "source_key": key, "request": dict(source.request),
        "status": store.PENDING, "bill_id": source.bill_id, "received_at": now,
    })  # fmt: skip
    row = store.find(conn, key)
    if created:
        return row, True
    if dict(row.request or {}) != dict(source.request):
        raise ConflictError(f"{key} was received with another account, amount or reference "
                            f"(payment {row.id})")  # fmt: skip
    return row, False
