"""The durable outbox: every usage record and event is stored here before it is published.

A row leaves the outbox only when the **hub** confirms it has settled it, with a signed receipt
(:meth:`Outbox.confirm`, ``protocol.receipts``); the broker's PUBACK only frees the in-flight
window. Rows keep their insertion order (``id``, never reused), which is the order they are
first published in. Before a row is handed to the MQTT client it is marked ``sent``, durably, in
the transaction that reads it (:meth:`Outbox.next_batch`), so that it is never merged
afterwards; a sent row that stays unconfirmed is due again after ``resend_after_s``, doubling
with each try up to ``RESEND_MAX_S`` (:meth:`Outbox.due_batch`).

Every usage record is stamped with the outbox's ``epoch`` (random, made with the file, and
``began``, when): a receipt confirms the seqs of one epoch only, so if the file is lost and seqs
start over, no receipt meant for the old records can delete the new ones. The hub tells such a
gateway where to resume; :meth:`Outbox.renumber` moves a meter's records above it
(``agent/resume.py``).

When the outbox holds more than ``max_rows`` rows, the oldest usage records are merged, never
dropped (rule below and in ``agent/uplink/README.md``). Sent rows count towards the bound but
are never merged, so the uplink keeps at most ``send_window`` rows (half the bound) sent and
unconfirmed: the other half is room for unsent records to merge in. Events are never merged or
dropped, so the bound is soft when the outbox holds nothing mergeable.

Merge rule. Two records ``a`` (older) and ``b`` of the same meter merge when both are unsent, ``b``
is the next record of that meter in the outbox, ``b.import_start == a.import_end`` (no register
reset between them) and both carry the same tariff and version. The merged record has ``a``'s start
(at most ``MAX_SPAN`` before ``b``'s end) and import_start, ``b``'s end and import_end, the
providers' shares summed, the mean current of both weighted by their durations (none if either has
none), ``merged = a.merged + b.merged``, and ``b``'s seq, in ``a``'s place in the order. It takes
the higher seq because the hub's credit state says "balance includes every record up to
``as_of_seq``": with ``b``'s seq, a state at that seq covers both intervals, whereas with ``a``'s
seq the agent would count ``b``'s charge twice. Reusing either seq is safe because neither row was
ever handed to the broker; ``a``'s seq is simply never used (a gap the hub accepts). Among the
oldest ``MERGE_WINDOW`` unsent usage rows, the pair with the fewest intervals (smallest summed
``merged``) goes first, oldest first on ties, so resolution degrades evenly from the oldest end.
"""

import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agent.store import AgentStore
from protocol.messages import MAX_SPAN, Event, UsageRecord
from protocol.receipts import Receipt

log = logging.getLogger(__name__)

MERGE_WINDOW = 2000
RESEND_AFTER_S = 30.0
RESEND_MAX_S = 600.0

Kind = Literal["usage", "event"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('usage', 'event')),
    meter TEXT,
    seq INTEGER,
    merged INTEGER NOT NULL DEFAULT 1,
    import_start INTEGER,
    import_end INTEGER,
    tariff TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_unsent_usage ON outbox (kind, sent, id);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)
"""
# Columns added for hub receipts; an outbox file from before them gets them on open.
_COLUMNS = {
    "ref": "ALTER TABLE outbox ADD COLUMN ref TEXT",
    "tries": "ALTER TABLE outbox ADD COLUMN tries INTEGER NOT NULL DEFAULT 0",
    "next_try": "ALTER TABLE outbox ADD COLUMN next_try REAL NOT NULL DEFAULT 0",
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS outbox_meter_seq ON outbox (meter, seq)",
    "CREATE INDEX IF NOT EXISTS outbox_ref ON outbox (ref)",
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sent, next_try)",
)


@dataclass(frozen=True)
class Row:
    """One stored message part: a usage record or an event, as its JSON text."""

    id: int
    kind: Kind
    body: str


@dataclass(frozen=True)
class _Candidate:
    id: int
    meter: str
    seq: int
    merged: int
    import_start: int
    import_end: int
    tariff: str


class Outbox:
    """Thread-safe SQLite outbox bounded by ``max_rows`` (see the module docstring)."""

    def __init__(
        self, store: AgentStore | Path, max_rows: int, *, resend_after_s: float = RESEND_AFTER_S
    ) -> None:
        """``store``: the agent's store (shared, so an add can join the caller's transaction),
        or a path to open one of its own."""
        if max_rows < 4:
            raise ValueError("max_rows must be at least 4")
        self.max_rows = max_rows
        self.send_window = max_rows // 2
        self.resend_after_s = resend_after_s
        self._store, self._owned = AgentStore.of(store)
        self.path = self._store.path
        self._listeners: list[Callable[[], None]] = []
        self._warned_full = False
        with self._store.transaction() as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            for column, ddl in _COLUMNS.items():
                if column not in have:
                    conn.execute(ddl)
            for ddl in _INDEXES:
                conn.execute(ddl)
            found = conn.execute("SELECT value FROM outbox_meta WHERE key = 'epoch'").fetchone()
            if found is None:
                found = (secrets.token_hex(8),)
                conn.executemany(
                    "INSERT INTO outbox_meta (key, value) VALUES (?, ?)",
                    [("epoch", found[0]), ("began", datetime.now(UTC).isoformat())],
                )
            self.epoch: str = str(found[0])
            began = conn.execute("SELECT value FROM outbox_meta WHERE key = 'began'").fetchone()
            # when this epoch began (None: an outbox made before the time was kept)
            self.began = None if began is None else datetime.fromisoformat(began[0])
            self._count(conn)
        self._store.on_rollback(self._recount)

    # -- writing ------------------------------------------------------------------------------

    def add_usage(self, record: UsageRecord) -> int:
        """Store ``record`` (stamped with this outbox's epoch) durably; merges old records if
        the outbox is over its bound."""
        if record.epoch != self.epoch:
            record = record.model_copy(update={"epoch": self.epoch})
        body = record.model_dump_json(exclude_none=True)
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO outbox (kind, meter, seq, merged, import_start, import_end, tariff,"
                " body) VALUES ('usage', ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.meter,
                    record.seq,
                    record.merged,
                    record.import_start,
                    record.import_end,
                    _tariff_key(record),
                    body,
                ),
            )
            row_id = int(cur.lastrowid or 0)
            self._depth += 1
            self._shrink(conn)
        self._store.after_commit(self._notify)
        return row_id

    def add_event(self, event: Event) -> int:
        """Store ``event`` durably. Events are never merged or dropped."""
        body = event.model_dump_json(exclude_none=True)
        with self._store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO outbox (kind, meter, ref, body) VALUES ('event', ?, ?, ?)",
                (event.meter, event.id, body),
            )
            row_id = int(cur.lastrowid or 0)
            self._depth += 1
            self._shrink(conn)
        self._store.after_commit(self._notify)
        return row_id

    def next_batch(
        self, after: int, limit: int, max_bytes: int, now: float | None = None
    ) -> list[Row]:
        """The next rows to publish, marked ``sent`` (and due again after ``resend_after_s``)
        in the same transaction.

        The longest run of rows of one kind with ``id > after``, at most ``limit`` rows and
        ``max_bytes`` of bodies. Atomic with the mark, so a merge cannot change a row between
        being read for publishing and being protected from merging.
        """
        with self._store.transaction() as conn:
            rows = conn.execute(
                "SELECT id, kind, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
            return self._take(conn, rows, max_bytes, now)

    def due_batch(self, limit: int, max_bytes: int, now: float | None = None) -> list[Row]:
        """Sent rows still unconfirmed past their resend time, oldest first, due again later
        (the delay doubles with each try, up to ``RESEND_MAX_S``)."""
        moment = time.time() if now is None else now
        with self._store.transaction() as conn:
            rows = conn.execute(
                "SELECT id, kind, body FROM outbox WHERE sent = 1 AND next_try <= ?"
                " ORDER BY id LIMIT ?",
                (moment, limit),
            ).fetchall()
            return self._take(conn, rows, max_bytes, moment)

    def _take(
        self, conn: sqlite3.Connection, rows: list[Any], max_bytes: int,
        now: float | None,
    ) -> list[Row]:  # fmt: skip
        batch: list[Row] = []
        size = 0
        for row_id, kind, body in rows:
            if batch and (kind != batch[0].kind or size + len(body) + 1 > max_bytes):
                break
            batch.append(Row(int(row_id), kind, body))
            size += len(body) + 1
        if not batch:
            return batch
        moment = time.time() if now is None else now
        before = conn.total_changes
        conn.executemany(
            "UPDATE outbox SET sent = 1 WHERE id = ? AND sent = 0", [(r.id,) for r in batch]
        )
        self._sent += conn.total_changes - before
        conn.executemany(
            "UPDATE outbox SET next_try = ? + min(? * (1 << min(tries, 16)), ?),"
            " tries = tries + 1 WHERE id = ?",
            [(moment, self.resend_after_s, RESEND_MAX_S, r.id) for r in batch],
        )
        return batch

    def confirm(self, receipt: Receipt) -> int:
        """Delete the sent rows the hub's (verified) ``receipt`` says it settled: usage of this
        outbox's epoch by (meter, seq), events by id. The number deleted."""
        usage = receipt.usage if receipt.epoch == self.epoch else {}
        if receipt.usage and not usage:
            log.warning("receipt for epoch %s ignored: this outbox is epoch %s",
                        receipt.epoch, self.epoch)  # fmt: skip
        params = [(m, lo, hi) for m, spans in usage.items() for lo, hi in spans]
        with self._store.transaction() as conn:
            before = conn.total_changes
            conn.executemany(
                "DELETE FROM outbox WHERE kind = 'usage' AND sent = 1 AND meter = ?"
                " AND seq BETWEEN ? AND ?",
                params,
            )
            conn.executemany(
                "DELETE FROM outbox WHERE kind = 'event' AND sent = 1 AND ref = ?",
                [(ref,) for ref in receipt.events],
            )
            deleted = conn.total_changes - before
            self._depth -= deleted
            self._sent -= deleted
        return deleted

    def renumber(self, meter: str, shift: int) -> int:
        """Add ``shift`` to the seq of every usage record of ``meter`` in the outbox and make
        the sent ones due again now (``agent/resume.py``), in one transaction (the caller's, if
        open). The number of records renumbered."""
        with self._store.transaction() as conn:
            rows = conn.execute(
                "SELECT id, body FROM outbox WHERE kind = 'usage' AND meter = ?", (meter,)
            ).fetchall()
            updates = []
            for row_id, body in rows:
                record = UsageRecord.model_validate_json(body)
                moved = record.model_copy(update={"seq": record.seq + shift})
                updates.append((moved.seq, moved.model_dump_json(exclude_none=True), row_id))
            conn.executemany(
                "UPDATE outbox SET seq = ?, body = ?, next_try = 0 WHERE id = ?", updates
            )
        return len(updates)

    def first_usage(self, meter: str) -> UsageRecord | None:
        """The usage record of ``meter`` with the lowest seq in the outbox, if any."""
        with self._store.read() as conn:
            row = conn.execute(
                "SELECT body FROM outbox WHERE kind = 'usage' AND meter = ? ORDER BY seq LIMIT 1",
                (meter,),
            ).fetchone()
        return None if row is None else UsageRecord.model_validate_json(row[0])

    def resend_all(self) -> None:
        """Every sent, unconfirmed row is due again now (after a reconnect: the broker may have
        lost it; after the hub came back: nobody may have been there to receive it)."""
        with self._store.transaction() as conn:
            conn.execute("UPDATE outbox SET next_try = 0 WHERE sent = 1")

    # -- reading ------------------------------------------------------------------------------

    def last_sent_id(self) -> int:
        """The highest id handed out by :meth:`next_batch` (rows up to it are all sent)."""
        with self._store.read() as conn:
            found = conn.execute("SELECT max(id) FROM outbox WHERE sent = 1").fetchone()
        return int(found[0] or 0)

    def pending(self, limit: int, after: int = 0) -> list[Row]:
        """Up to ``limit`` rows with ``id > after``, oldest first."""
        with self._store.read() as conn:
            rows = conn.execute(
                "SELECT id, kind, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Row(int(r[0]), r[1], r[2]) for r in rows]

    def depth(self) -> int:
        """Rows the hub has not confirmed yet (usage records and events), sent or not."""
        with self._store.read():
            return self._depth

    def unconfirmed(self) -> int:
        """Rows sent at least once and not yet confirmed by the hub."""
        with self._store.read():
            return self._sent

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (quickly, from the writing thread) after every add, once it is
        committed."""
        self._listeners.append(listener)

    def close(self) -> None:
        """Close the store if this outbox opened it (a shared one is closed by its owner)."""
        if self._owned:
            self._store.close()

    def _count(self, conn: sqlite3.Connection) -> None:
        self._depth = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])
        self._sent = int(conn.execute("SELECT count(*) FROM outbox WHERE sent = 1").fetchone()[0])

    def _recount(self) -> None:
        """After a rollback (of this outbox's write or of the caller's transaction around it)
        the counters kept in memory may count rows that were undone."""
        try:
            self._count(self._store.conn)
        except sqlite3.Error:
            log.exception("outbox: recounting rows after a rollback failed")

    # -- merging ------------------------------------------------------------------------------

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def _shrink(self, conn: sqlite3.Connection) -> None:
        while self._depth > self.max_rows:
            pair = self._pick_pair(conn)
            if pair is None:
                if not self._warned_full:
                    log.warning(
                        "outbox holds %d rows (bound %d) and nothing more can be merged",
                        self._depth,
                        self.max_rows,
                    )
                    self._warned_full = True
                return
            self._merge(conn, *pair)
            self._depth -= 1
        self._warned_full = False

    def _pick_pair(self, conn: sqlite3.Connection) -> tuple[int, int] | None:
        rows = conn.execute(
            "SELECT id, meter, seq, merged, import_start, import_end, tariff FROM outbox"
            " WHERE kind = 'usage' AND sent = 0 ORDER BY id LIMIT ?",
            (MERGE_WINDOW,),
        ).fetchall()
        last: dict[str, _Candidate] = {}
        best: tuple[int, int, int] | None = None
        for row in rows:
            cand = _Candidate(*row)
            prev = last.get(cand.meter)
            last[cand.meter] = cand
            if (
                prev is None
                or prev.import_end != cand.import_start
                or prev.tariff != cand.tariff
                or prev.seq >= cand.seq
            ):  # fmt: skip (a renumbering's bridge comes last)
                continue
            weight = prev.merged + cand.merged
            if best is None or weight < best[0]:
                best = (weight, prev.id, cand.id)
        return None if best is None else (best[1], best[2])

    def _merge(self, conn: sqlite3.Connection, first_id: int, second_id: int) -> None:
        bodies = dict(
            conn.execute(
                "SELECT id, body FROM outbox WHERE id IN (?, ?)", (first_id, second_id)
            ).fetchall()
        )
        a = UsageRecord.model_validate_json(bodies[first_id])
        b = UsageRecord.model_validate_json(bodies[second_id])
        merged = merge(a, b)
        conn.execute(
            "UPDATE outbox SET seq = ?, merged = ?, import_end = ?, body = ? WHERE id = ?",
            (
                merged.seq,
                merged.merged,
                merged.import_end,
                merged.model_dump_json(exclude_none=True),
                first_id,
            ),
        )
        conn.execute("DELETE FROM outbox WHERE id = ?", (second_id,))
        log.debug("outbox full: merged %s seq %d into seq %d", a.meter, a.seq, b.seq)


def merge(a: UsageRecord, b: UsageRecord) -> UsageRecord:
    """``a`` then ``b`` of one meter as one record (the rule in the module docstring)."""
    if a.meter != b.meter or a.import_end != b.import_start or b.seq <= a.seq:
        raise ValueError("only consecutive records of one meter merge")
    shares = dict(a.shares)
    for provider, amount in b.shares.items():
        shares[provider] = shares.get(provider, 0) + amount
    return UsageRecord.model_validate(
        {
            **a.model_dump(),
            "seq": b.seq,
            "start": max(a.start, b.end - MAX_SPAN),  # within the protocol's bound
            "end": b.end,
            "import_end": b.import_end,
            "shares": shares,
            "merged": a.merged + b.merged,
            "current_mean_a": mean_current(a, b),
        }
    )


def mean_current(a: UsageRecord, b: UsageRecord) -> float | None:
    """The mean current of ``a`` then ``b``, each weighted by its duration (equally when both
    last no time); None when either has none."""
    if a.current_mean_a is None or b.current_mean_a is None:
        return None
    wa = (a.end - a.start).total_seconds()
    wb = (b.end - b.start).total_seconds()
    if wa + wb <= 0:
        wa = wb = 1.0
    return round((a.current_mean_a * wa + b.current_mean_a * wb) / (wa + wb), 3)


def _tariff_key(record: UsageRecord) -> str:
    if record.tariff is None:
        return ""
    return f"{record.tariff}@{record.tariff_version}"
