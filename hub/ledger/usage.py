"""Usage postings in batches: many records, one transaction, Core executemany.

Each record becomes one journal entry (kind ``usage``) and one ``posted_usage`` row keyed by
(meter, seq). A (meter, seq) already posted, or repeated inside the batch, is skipped and
reported as a duplicate, never posted twice. Meter rows are locked in id order first, so two
batches for the same meter serialise (PostgreSQL) and the check-then-insert is race free.
Usage is never refused for a floor: the energy was consumed; the caller reacts to balances.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from hub.errors import LedgerError
from hub.ledger.bulk import allocate_ids, execute_many, find_posted, insert_columns, select_in
from hub.ledger.lines import Line, check_lines, merge_deltas
from hub.ledger.meters import set_carry
from hub.ledger.posting import apply_deltas
from hub.ledger.sql import Executor, accounts, conn_of, entries, lines, meters, posted
from hub.models import EntryKind, utcnow


@dataclass(frozen=True)
class UsagePosting:
    """One rated usage record. ``lines`` as in ``post_entry`` (customer debits negative,
    provider shares positive); empty when the interval costs nothing (it is still recorded).
    ``import_start``/``import_end``: the meter's cumulative register (base units) at the ends.
    ``carry``: the meter's rating carry state after this record (opaque), saved if given.
    ``segment``: the meter's register segment the record belongs to (``hub.rating.register``;
    0 until the caller accepts a register reset). ``current_mean_a``: the agent's mean current
    in the interval (A), kept for the insights' bypass check."""

    meter_id: str
    seq: int
    import_start: int
    import_end: int
    lines: Sequence[Line]
    currency: str
    interval_start: datetime | None = None
    interval_end: datetime | None = None
    memo: str = ""
    metadata: Mapping[str, Any] | None = None
    carry: str | None = None
    segment: int = 0
    current_mean_a: float | None = None


@dataclass(frozen=True)
class AccountState:
    balance: int
    floor: int | None


@dataclass
class BatchResult:
    posted: list[tuple[str, int, int]] = field(default_factory=list)  # (meter, seq, entry id)
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # (meter, seq)
    rejected: list[tuple[UsagePosting, str]] = field(default_factory=list)  # (record, reason)
    accounts: dict[str, AccountState] = field(default_factory=dict)  # touched, after the batch
    deferred: dict[str, int] = field(default_factory=dict)  # credits left to the caller


def _problem(p: UsagePosting) -> str | dict[str, int]:
    """Why the record cannot be posted, or its net change per account."""
    if type(p.seq) is not int or p.seq < 0:
        return "seq must be a non-negative integer"
    if type(p.segment) is not int or p.segment < 0:
        return "segment must be a non-negative integer"
    if type(p.import_start) is not int or type(p.import_end) is not int or p.import_start < 0:
        return "registers must be non-negative integers"
    if p.import_end < p.import_start:
        return "register went backwards (an event, not a charge)"
    try:
        return check_lines(p.lines, allow_empty=True)
    except LedgerError as exc:
        return exc.message


def post_usage_batch(
    db: Executor, postings: Sequence[UsagePosting], *, defer_credits: bool = False
) -> BatchResult:
    """Post every new, valid record of ``postings`` in the caller's transaction (see module).

    ``defer_credits``: the balance increases (the providers' shares) are not applied but
    returned in ``result.deferred``; the caller applies them (``apply_deltas``) last, just
    before its commit. Every settler's batch credits the same few provider accounts, and on
    PostgreSQL the row lock an UPDATE takes is held until the commit: applied last, concurrent
    batches wait on each other only for the commit, not for the rest of the transaction.
    ``result.accounts`` then lists only the accounts whose change was applied."""
    result = BatchResult()
    conn = conn_of(db)
    fresh: dict[tuple[str, int], UsagePosting] = {}
    deltas: dict[tuple[str, int], dict[str, int]] = {}
    for p in postings:
        checked = _problem(p)
        if isinstance(checked, str):
            result.rejected.append((p, checked))
        elif (p.meter_id, p.seq) in fresh:
            result.duplicates.append((p.meter_id, p.seq))
        else:
            fresh[(p.meter_id, p.seq)] = p
            deltas[(p.meter_id, p.seq)] = checked
    meter_ids = sorted({m for m, _ in fresh})
    known = {r[0] for r in select_in(conn, meters, ("id",), "id", meter_ids, order_by="id",
                                     lock="UPDATE")}  # fmt: skip
    for key in sorted(find_posted(conn, list(fresh))):
        fresh.pop(key)
        result.duplicates.append(key)
    account_ids = sorted({a for p in fresh.values() for a, _ in p.lines})
    currency_of: dict[str, str] = dict(select_in(conn, accounts, ("id", "currency"), "id",
                                                 account_ids))  # fmt: skip
    todo: list[UsagePosting] = []
    for p in fresh.values():
        reason = _account_problem(p, known, currency_of)
        if reason is None:
            todo.append(p)
        else:
            result.rejected.append((p, reason))
    if todo:
        net = merge_deltas(deltas[(p.meter_id, p.seq)] for p in todo)
        if defer_credits:
            result.deferred = {a: v for a, v in net.items() if v > 0}
            net = {a: v for a, v in net.items() if v <= 0}
        _write(conn, todo, net, result)
    return result


def _account_problem(p: UsagePosting, known: set[str], currency_of: dict[str, str]) -> str | None:
    if p.meter_id not in known:
        return f"unknown meter {p.meter_id!r}"
    for account_id, _ in p.lines:
        if account_id not in currency_of:
            return f"unknown account {account_id!r}"
        if currency_of[account_id] != p.currency:
            return f"account {account_id!r} is in {currency_of[account_id]}, not {p.currency}"
    return None


def _plain(metadata: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``metadata`` as the dict the JSON column encodes (copied only if it is not one)."""
    if metadata is None or type(metadata) is dict:
        return metadata
    return dict(metadata)


def _write(
    conn: Any, todo: list[UsagePosting], deltas: dict[str, int], result: BatchResult
) -> None:
    now = utcnow()
    n = len(todo)
    ids = allocate_ids(conn, entries, n)
    meter_ids = [p.meter_id for p in todo]
    seqs = [p.seq for p in todo]
    ends = [p.interval_end for p in todo]
    insert_columns(conn, entries, {
        "id": ids, "kind": [EntryKind.USAGE.value] * n, "currency": [p.currency for p in todo],
        "created_at": [now] * n, "effective_at": [end or now for end in ends],
        "meter_id": meter_ids, "seq": seqs, "idempotency_key": [None] * n,
        "reverses_id": [None] * n, "memo": [p.memo for p in todo],
        "metadata": [_plain(p.metadata) for p in todo],
    })  # fmt: skip
    line_ids: list[int] = []
    line_accounts: list[str] = []
    line_amounts: list[int] = []
    for eid, p in zip(ids, todo, strict=True):
        for account_id, amount in p.lines:
            line_ids.append(eid)
            line_accounts.append(account_id)
            line_amounts.append(amount)
    insert_columns(conn, lines, {"entry_id": line_ids, "account_id": line_accounts,
                                 "amount": line_amounts})  # fmt: skip
    insert_columns(conn, posted, {
        "meter_id": meter_ids, "seq": seqs, "entry_id": ids,
        "import_start": [p.import_start for p in todo], "import_end": [p.import_end for p in todo],
        "segment": [p.segment for p in todo],
        "interval_start": [p.interval_start for p in todo], "interval_end": ends,
        "current_mean_a": [p.current_mean_a for p in todo],
    })  # fmt: skip
    apply_deltas(conn, deltas)
    record_progress(conn, todo)
    result.posted.extend((p.meter_id, p.seq, eid) for eid, p in zip(ids, todo, strict=True))
    touched = sorted({a for p in todo for a, _ in p.lines} - set(result.deferred))
    found = select_in(conn, accounts, ("id", "balance", "floor"), "id", touched)
    result.accounts = {aid: AccountState(balance, floor) for aid, balance, floor in found}


_PROGRESS = ("UPDATE meters SET last_seq = ?, import_wh = ? "
             "WHERE id = ? AND (last_seq IS NULL OR last_seq < ?)")  # fmt: skip
# PostgreSQL: the same for every meter in one statement (the batch locked their rows first).
_PROGRESS_PG = (
    "UPDATE meters m SET last_seq = v.seq, import_wh = v.wh "
    "FROM unnest(CAST(%b AS VARCHAR[]), CAST(%b AS BIGINT[]), CAST(%b AS BIGINT[])) "
    "AS v(id, seq, wh) WHERE m.id = v.id AND (m.last_seq IS NULL OR m.last_seq < v.seq)"
)


def record_progress(conn: Any, postings: Sequence[UsagePosting]) -> None:
    """Move each meter's ``last_seq``/``import_wh`` to its highest posted seq (never back),
    and save the carry state of each meter's last record in batch order that has one."""
    newest: dict[str, UsagePosting] = {}
    carries: dict[str, str] = {}
    for p in postings:
        if p.meter_id not in newest or p.seq > newest[p.meter_id].seq:
            newest[p.meter_id] = p
        if p.carry is not None:
            carries[p.meter_id] = p.carry
    ids = sorted(newest)
    if ids and conn.dialect.name == "postgresql":
        conn.exec_driver_sql(_PROGRESS_PG, (ids, [newest[m].seq for m in ids],
                                            [newest[m].import_end for m in ids]))  # fmt: skip
    else:
        execute_many(conn, _PROGRESS, (None, None, None, None),
                     [(newest[m].seq, newest[m].import_end, m, newest[m].seq)
                      for m in ids])  # fmt: skip
    for meter_id in sorted(carries):
        set_carry(conn, meter_id, carries[meter_id])
