"""Top-ups: money in from outside (cash, mobile money, a card), at most once per key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hub.errors import IdempotencyConflictError, InvalidInputError, UnknownAccountError
from hub.ledger._sql import MAX_AMOUNT, Executor, accounts, conn_of, entries
from hub.ledger.accounts import clearing_account_id, ensure_account
from hub.ledger.posting import find_by_key, lock_accounts, post
from hub.models import AccountKind, EntryKind

MAX_KEY = 100


@dataclass(frozen=True)
class TopupResult:
    entry_id: int
    account_id: str
    amount: int
    currency: str
    balance: int  # the account's balance right after this top-up (the same on a replay)
    created: bool  # False: a replay of an earlier request, no money moved


def topup_key(account_id: str, idempotency_key: str) -> str:
    """The journal's key for a top-up: client keys are scoped to the account they top up."""
    return f"topup:{account_id}:{idempotency_key}"


def post_topup(
    db: Executor,
    account_id: str,
    amount: int,
    *,
    idempotency_key: str,
    reference: str = "",
    source_account_id: str | None = None,
    effective_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> TopupResult:
    """Credit ``amount`` minor units to ``account_id``, debiting ``source_account_id`` (default:
    the clearing account of the account's currency, opened on first use, no floor).

    The same ``idempotency_key`` for the same account again returns the first result and moves
    no money; with another amount, reference or source it raises IdempotencyConflictError (409).
    """
    if type(amount) is not int or not 0 < amount < MAX_AMOUNT:
        raise InvalidInputError("amount", "must be a positive whole number of minor units")
    if not 0 < len(idempotency_key) <= MAX_KEY:
        raise InvalidInputError("Idempotency-Key", f"must be 1 to {MAX_KEY} characters")
    conn = conn_of(db)
    currency = conn.execute(
        select(accounts.c.currency).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    if currency is None:
        raise UnknownAccountError(account_id)
    source = source_account_id or clearing_account_id(currency)
    if source == account_id:
        raise InvalidInputError("source", "a top-up cannot come from the account it credits")
    if source_account_id is None:
        ensure_account(conn, source, name=f"Clearing {currency}", kind=AccountKind.CLEARING,
                       currency=currency)  # fmt: skip
    row = lock_accounts(conn, [account_id, source])[account_id]  # both, in id order
    request = {"account": account_id, "amount": amount, "reference": reference, "source": source}
    key = topup_key(account_id, idempotency_key)
    if (found := find_by_key(conn, key)) is not None:
        return _replay(conn, found, key, request, row.currency)
    balance = row.balance + amount
    meta = {**(metadata or {}), "topup": request, "balance_after": balance}
    posted = post(
        conn, EntryKind.TOPUP, [(source, -amount), (account_id, amount)], row.currency,
        effective_at=effective_at, memo=reference[:500], metadata=meta, idempotency_key=key,
    )  # fmt: skip
    if not posted.created:
        return _replay(conn, posted.entry_id, key, request, row.currency)
    return TopupResult(posted.entry_id, account_id, amount, row.currency, balance, True)


def _replay(
    conn: Any, entry_id: int, key: str, request: dict[str, Any], currency: str
) -> TopupResult:
    meta = conn.execute(select(entries.c["metadata"]).where(entries.c.id == entry_id)).scalar_one()
    meta = meta or {}
    if meta.get("topup") != request:
        raise IdempotencyConflictError(key, entry_id)
    return TopupResult(entry_id, request["account"], request["amount"], currency,
                       int(meta["balance_after"]), created=False)  # fmt: skip
