"""Top-up postings: money in from outside (cash, mobile money, a card), at most once per key.
This is the ledger's part; the use case around it (validation, debt recovery in the same
transaction, credit control after the commit) is ``hub.services.topups``.

Two namespaces that cannot meet: an API client's ``Idempotency-Key`` is scoped to the account
it tops up (journal key ``topup:<account>:<key>``, whatever the key says), and a payment
provider's transaction is unique per provider whatever the account (a ``payment_transactions``
row, journal key ``payment:<provider>:<transaction id>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select

from hub.errors import IdempotencyConflictError, InvalidInputError, UnknownAccountError
from hub.ledger.accounts import clearing_account_id, ensure_account
from hub.ledger.posting import find_by_key, lock_accounts, post
from hub.ledger.sql import MAX_AMOUNT, Executor, accounts, conn_of, entries, payments
from hub.models import ID_PATTERN, AccountKind, EntryKind

MAX_KEY = 100
MAX_TRANSACTION_ID = 80


@dataclass(frozen=True)
class ProviderTxn:
    """A payment provider's transaction id: credited at most once per provider."""

    provider: str
    transaction_id: str

    def __post_init__(self) -> None:
        if not re.match(ID_PATTERN, self.provider):
            raise InvalidInputError("provider", f"must match {ID_PATTERN}")
        if not 0 < len(self.transaction_id) <= MAX_TRANSACTION_ID:
            raise InvalidInputError(
                "transaction_id", f"must be 1 to {MAX_TRANSACTION_ID} characters"
            )


@dataclass(frozen=True)
class TopupResult:
    entry_id: int
    account_id: str
    amount: int
    currency: str
    balance: int  # the account's balance right after this top-up (the same on a replay)
    created: bool  # False: a replay of an earlier request, no money moved
    payment: int | None = None  # its payment record (hub.payments), set by hub.services.topups


def topup_key(account_id: str, idempotency_key: str) -> str:
    """The journal's key for an API top-up: client keys are scoped to the account they top up
    and always start ``topup:``, so no client key is another namespace's key."""
    return f"topup:{account_id}:{idempotency_key}"


def payment_key(txn: ProviderTxn) -> str:
    """The journal's key for a provider's payment (a provider id has no colon)."""
    return f"payment:{txn.provider}:{txn.transaction_id}"


def find_payment(db: Executor, txn: ProviderTxn) -> int | None:
    """The entry that credited the provider's transaction, or None."""
    stmt = select(payments.c.entry_id).where(
        payments.c.provider == txn.provider, payments.c.transaction_id == txn.transaction_id
    )
    return conn_of(db).execute(stmt).scalar_one_or_none()


def post_topup(
    db: Executor,
    account_id: str,
    amount: int,
    *,
    idempotency_key: str | None = None,
    payment: ProviderTxn | None = None,
    reference: str = "",
    source_account_id: str | None = None,
    effective_at: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> TopupResult:
    """Credit ``amount`` minor units to ``account_id``, debiting ``source_account_id`` (default:
    the clearing account of the account's currency, opened on first use, no floor).

    Exactly one of ``idempotency_key`` (an API client's key, scoped to the account) and
    ``payment`` (a provider's transaction, unique per provider whatever the account). The same
    key or transaction again with the same account, amount, reference and source returns the
    first result and moves no money; with anything else it raises IdempotencyConflictError (409).
    """
    if type(amount) is not int or not 0 < amount < MAX_AMOUNT:
        raise InvalidInputError("amount", "must be a positive whole number of minor units")
    if payment is not None:
        if idempotency_key is not None:
            raise ValueError("a top-up has an idempotency key or a payment, not both")
    elif idempotency_key is None or not 0 < len(idempotency_key) <= MAX_KEY:
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
    if payment is not None:
        key = payment_key(payment)
        found = find_payment(conn, payment)  # also the payments posted before revision 0300
    else:
        key = topup_key(account_id, idempotency_key or "")
        found = find_by_key(conn, key)
    if found is not None:
        return _replay(conn, found, key, request, row.currency)
    balance = row.balance + amount
    meta = {**(metadata or {}), "topup": request, "balance_after": balance}
    posted = post(
        conn, EntryKind.TOPUP, [(source, -amount), (account_id, amount)], row.currency,
        effective_at=effective_at, memo=reference[:500], metadata=meta, idempotency_key=key,
    )  # fmt: skip
    if not posted.created:  # lost a race for the key: the winner is committed
        return _replay(conn, posted.entry_id, key, request, row.currency)
    if payment is not None:
        conn.execute(insert(payments).values(provider=payment.provider,
                     transaction_id=payment.transaction_id, entry_id=posted.entry_id))  # fmt: skip
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
