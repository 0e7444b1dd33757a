"""Posting allocations (I/O): a payment's split by the policy, as one balanced ledger entry
with a line per provider, and its allocation rows.

The allocation entry (kind ``allocation``) credits ``collected:<provider>`` with what the
payment brought each provider and debits ``allocated:<CUR>`` with the sum: a pair of memo
accounts that says whose the collected cash is, leaving the customer's and the providers'
balances as they are (a provider was credited when the usage was posted; the customer's account
when the cash came in). ``collected:<p>`` is always the sum of ``p``'s allocations.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from hub.ledger.accounts import ensure_account
from hub.ledger.posting import lock_accounts, post
from hub.models import AccountKind, EntryKind
from hub.payments import store
from hub.payments.policy import Allocation, Policy, Split, allocate


def allocated_account_id(currency: str) -> str:
    return f"allocated:{currency}"


def collected_account_id(provider_id: str) -> str:
    return f"collected:{provider_id}"


def post_allocation(conn: Connection, payment_id: int, currency: str,
                    parts: Sequence[Allocation], *, source: str, key: str,
                    now: datetime) -> None:  # fmt: skip
    """One entry for ``parts`` (nothing when empty) and their rows."""
    per: dict[str, int] = {}
    for part in parts:
        per[part.provider] = per.get(part.provider, 0) + part.amount
    if not per:
        return
    pool = allocated_account_id(currency)
    ensure_account(conn, pool, name=f"Allocated {currency}", kind=AccountKind.CLEARING,
                   currency=currency)  # fmt: skip
    for provider in per:
        ensure_account(conn, collected_account_id(provider), name=f"Collected for {provider}",
                       kind=AccountKind.CLEARING, currency=currency)  # fmt: skip
    lines = [(pool, -sum(per.values()))]
    lines += [(collected_account_id(p), v) for p, v in sorted(per.items())]
    posted = post(conn, EntryKind.ALLOCATION, lines, currency, effective_at=now,
                  memo=f"payment {payment_id}", idempotency_key=key,
                  metadata={"payment": payment_id, "source": source})  # fmt: skip
    if not posted.created:
        return
    store.insert_allocations(conn, [
        {"payment_id": payment_id, "bill_id": p.bill, "provider_id": p.provider,
         "tier": p.tier, "amount": p.amount, "source": source, "entry_id": posted.entry_id,
         "at": now}
        for p in parts
    ])  # fmt: skip


def credit_payment(conn: Connection, payment_id: int, entry_id: int, rules: Policy,
                   now: datetime) -> Split:  # fmt: skip
    """Allocate a payment whose cash-in entry ``entry_id`` was just posted, and mark it
    credited with the policy's version. The customer's account row is locked first, so two
    payments of one customer allocate one after the other."""
    row = store.get(conn, payment_id, lock=True)
    lock_accounts(conn, [row.account_id])
    split = allocate(int(row.amount), store.open_bills(conn, row.account_id), rules)
    post_allocation(conn, payment_id, row.currency, split.allocations, source="payment",
                    key=f"allocation:{payment_id}", now=now)  # fmt: skip
    store.mark_credited(conn, payment_id, entry_id=entry_id, credit=split.credit,
                        policy=rules.version, now=now)  # fmt: skip
    return split


def apply_credit(conn: Connection, customer_id: str, currency: str, rules: Policy,
                 now: datetime) -> None:  # fmt: skip
    """The customer's carried credit (what its payments left unallocated), oldest payment
    first, allocated to its open bills: called when a bill is issued."""
    lock_accounts(conn, [customer_id])
    for payment_id, left in store.credits_left(conn, customer_id):
        bills = store.open_bills(conn, customer_id)
        if not bills:
            return
        split = allocate(left, bills, rules)
        done = len(store.allocations_of(conn, payment_id))  # each application a key of its own
        post_allocation(conn, payment_id, currency, split.allocations, source="credit",
                        key=f"allocation:{payment_id}:credit:{done}", now=now)  # fmt: skip
