"""Posting one balanced entry. Never commits: the caller owns the transaction.

Order inside a posting, chosen so that a refused entry writes nothing and concurrent postings
neither lose updates nor deadlock: validate the lines; lock the accounts in id order
(``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite holds its write lock from ``BEGIN IMMEDIATE``);
look up the idempotency key; check currencies and floors; insert the entry (``ON CONFLICT DO
NOTHING`` on the key), its lines, and ``UPDATE accounts SET balance = balance + :delta``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection

from hub.errors import BelowFloorError, CurrencyMismatchError, UnknownAccountError
from hub.ledger.bulk import execute_many
from hub.ledger.lines import Line, check_lines
from hub.ledger.sql import Executor, accounts, conn_of, entries, insert_ignore, lines
from hub.models import EntryKind, utcnow


@dataclass(frozen=True)
class Posted:
    entry_id: int
    created: bool  # False: the idempotency key was already used, nothing was written


def lock_accounts(conn: Connection, account_ids: Sequence[str]) -> dict[str, Any]:
    """Rows (id, currency, balance, floor) of the accounts, locked in id order on PostgreSQL."""
    stmt = (
        select(accounts.c.id, accounts.c.currency, accounts.c.balance, accounts.c.floor)
        .where(accounts.c.id.in_(sorted(set(account_ids))))
        .order_by(accounts.c.id)
        .with_for_update()
    )
    return {row.id: row for row in conn.execute(stmt)}


# PostgreSQL: the rows locked in id order first, as the row-by-row updates locked them (so
# concurrent postings cannot deadlock), then all of them updated in one statement. A batch's
# thousands of one-row UPDATEs cost the server about twice the CPU per account
# (``bench.pg_batch``, ``docs/scaling.md`` 2.6).
_LOCK_PG = "SELECT 1 FROM accounts WHERE id = ANY(%b) ORDER BY id FOR NO KEY UPDATE"
_DELTAS_PG = (
    "UPDATE accounts a SET balance = a.balance + d.delta "
    "FROM unnest(CAST(%b AS VARCHAR[]), CAST(%b AS BIGINT[])) AS d(id, delta) WHERE a.id = d.id"
)


def apply_deltas(conn: Connection, deltas: Mapping[str, int]) -> None:
    """Add each delta to its account's cached balance, in id order, without reading it first."""
    if not deltas:
        return
    ids = sorted(deltas)
    if conn.dialect.name == "postgresql" and len(ids) > 1:
        conn.exec_driver_sql(_LOCK_PG, (ids,))
        conn.exec_driver_sql(_DELTAS_PG, (ids, [deltas[k] for k in ids]))
        return
    execute_many(conn, "UPDATE accounts SET balance = balance + ? WHERE id = ?", (None, None),
                 [(deltas[k], k) for k in ids])  # fmt: skip


def find_by_key(conn: Connection, key: str) -> int | None:
    stmt = select(entries.c.id).where(entries.c.idempotency_key == key)
    return conn.execute(stmt).scalar_one_or_none()


FLOORS_KEY = "floors"  # entry metadata: {account id: floor in force when posted}


def post(
    db: Executor,
    kind: EntryKind | str,
    entry_lines: Sequence[Line],
    currency: str,
    *,
    effective_at: datetime | None = None,
    memo: str = "",
    metadata: Mapping[str, Any] | None = None,
    idempotency_key: str | None = None,
    meter_id: str | None = None,
    seq: int | None = None,
    reverses_id: int | None = None,
    enforce_floor: bool = True,
) -> Posted:
    """Post one balanced entry (see ``post_entry``) and say whether it was written."""
    deltas = check_lines(entry_lines)
    conn = conn_of(db)
    rows = lock_accounts(conn, list(deltas))
    if idempotency_key is not None and (found := find_by_key(conn, idempotency_key)) is not None:
        return Posted(found, created=False)
    for account_id, delta in deltas.items():
        row = rows.get(account_id)
        if row is None:
            raise UnknownAccountError(account_id)
        if row.currency != currency:
            raise CurrencyMismatchError(account_id, currency, row.currency)
        if (
            enforce_floor
            and delta < 0
            and row.floor is not None
            and row.balance + delta < row.floor
        ):
            raise BelowFloorError(account_id, row.balance, delta, row.floor)
    now = utcnow()
    meta = dict(metadata) if metadata is not None else {}
    # The floor each debited account had when this entry was posted: invariant 9 checks the
    # debit against it, not against a floor moved since (emergency credit taken or repaid).
    floors = {
        a: int(rows[a].floor) for a, d in deltas.items() if d < 0 and rows[a].floor is not None
    }
    if floors:
        meta[FLOORS_KEY] = floors
    values = {"kind": EntryKind(kind).value, "currency": currency, "created_at": now,
              "effective_at": effective_at or now, "meter_id": meter_id, "seq": seq,
              "idempotency_key": idempotency_key, "reverses_id": reverses_id, "memo": memo,
              "metadata": meta or None}  # fmt: skip
    if idempotency_key is None:
        stmt: Any = insert(entries)
    else:
        # unique where set (PostgreSQL: a partial index, migration 0940)
        stmt = insert_ignore(conn, entries, ["idempotency_key"],
                             entries.c.idempotency_key.is_not(None))  # fmt: skip
    entry_id = conn.execute(stmt.values(values).returning(entries.c.id)).scalar_one_or_none()
    if entry_id is None:  # lost a race for the key: the other posting is committed
        return Posted(int(find_by_key(conn, idempotency_key or "") or 0), created=False)
    conn.execute(insert(lines), [{"entry_id": entry_id, "account_id": a, "amount": amount}
                                 for a, amount in entry_lines])  # fmt: skip
    apply_deltas(conn, deltas)
    return Posted(int(entry_id), created=True)


def post_entry(
    db: Executor,
    kind: EntryKind | str,
    entry_lines: Sequence[Line],
    currency: str,
    **options: Any,
) -> int:
    """Post one balanced entry in the caller's transaction and return its id.

    ``entry_lines``: (account id, amount) pairs, amount in minor units, positive = credit to
    the account, negative = debit; at least two, none zero, summing to zero. Every account must
    exist and be in ``currency``. With ``enforce_floor`` (default) a debit that would leave an
    account below its floor raises BelowFloorError. With ``idempotency_key``, a key already used
    returns the existing entry's id and writes nothing. Options: effective_at, memo, metadata,
    idempotency_key, meter_id, seq, enforce_floor. Raises a LedgerError; then nothing was written.
    """
    return post(db, kind, entry_lines, currency, **options).entry_id
