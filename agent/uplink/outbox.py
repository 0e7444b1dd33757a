"""The durable outbox: every usage record and event is stored here before it is published.

A row leaves the outbox only when the broker has acknowledged the message that carried it
(:meth:`Outbox.ack`). Rows keep their insertion order (``id``, never reused), which is the order
they are published in. Before a row is handed to the MQTT client it is marked ``sent``
(:meth:`Outbox.mark_sent`), durably, so that it is never merged afterwards.

When the outbox holds more than ``max_rows`` rows, the oldest usage records are merged, never
dropped (rule below and in ``agent/uplink/README.md``). Events are never merged or dropped, so
the bound is soft when the outbox holds nothing mergeable.

Merge rule. Two records ``a`` (older) and ``b`` of the same meter merge when both are unsent,
``b`` is the next record of that meter in the outbox, ``b.import_start == a.import_end`` (no
register reset between them) and both carry the same tariff and version. The merged record has
``a``'s start (at most ``MAX_SPAN`` before ``b``'s end) and import_start, ``b``'s end and
import_end, the providers' shares summed,
``merged = a.merged + b.merged``, and ``b``'s seq, in ``a``'s place in the order. It takes the
higher seq because the hub's credit state says "balance includes every record up to
``as_of_seq``": with ``b``'s seq, a state at that seq covers both intervals, whereas with ``a``'s
seq the agent would count ``b``'s charge twice. Reusing either seq is safe because neither row
was ever handed to the broker; ``a``'s seq is simply never used (a gap the hub accepts). Among the
oldest ``MERGE_WINDOW`` unsent usage rows, the pair with the fewest intervals (smallest summed
``merged``) goes first, oldest first on ties, so resolution degrades evenly from the oldest end.
"""

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.uplink.sqlite import StoreError, connect, transaction
from protocol.messages import MAX_SPAN, Event, UsageRecord

log = logging.getLogger(__name__)

MERGE_WINDOW = 2000

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
"""


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
    merged: int
    import_start: int
    import_end: int
    tariff: str


class Outbox:
    """Thread-safe SQLite outbox bounded by ``max_rows`` (see the module docstring)."""

    def __init__(self, path: Path, max_rows: int) -> None:
        if max_rows < 2:
            raise ValueError("max_rows must be at least 2")
        self.path = path
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self._conn = connect(path)
        self._warned_full = False
        with self._lock, transaction(self._conn, path) as conn:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            self._depth = int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    # -- writing ------------------------------------------------------------------------------

    def add_usage(self, record: UsageRecord) -> int:
        """Store ``record`` durably; merges old records if the outbox is over its bound."""
        body = record.model_dump_json(exclude_none=True)
        with self._lock, transaction(self._conn, self.path) as conn:
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
        self._notify()
        return row_id

    def add_event(self, event: Event) -> int:
        """Store ``event`` durably. Events are never merged or dropped."""
        body = event.model_dump_json(exclude_none=True)
        with self._lock, transaction(self._conn, self.path) as conn:
            cur = conn.execute(
                "INSERT INTO outbox (kind, meter, body) VALUES ('event', ?, ?)",
                (event.meter, body),
            )
            row_id = int(cur.lastrowid or 0)
            self._depth += 1
            self._shrink(conn)
        self._notify()
        return row_id

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Record, durably, that these rows are being handed to the broker: never merge them."""
        if not ids:
            return
        with self._lock, transaction(self._conn, self.path) as conn:
            conn.executemany("UPDATE outbox SET sent = 1 WHERE id = ?", [(i,) for i in ids])

    def ack(self, ids: Iterable[int]) -> int:
        """Delete rows the broker acknowledged; the number deleted."""
        params = [(i,) for i in ids]
        if not params:
            return 0
        with self._lock, transaction(self._conn, self.path) as conn:
            before = conn.total_changes
            conn.executemany("DELETE FROM outbox WHERE id = ?", params)
            deleted = conn.total_changes - before
            self._depth -= deleted
        return deleted

    def next_batch(self, after: int, limit: int, max_bytes: int) -> list[Row]:
        """The next rows to publish, marked ``sent`` in the same transaction.

        The longest run of rows of one kind with ``id > after``, at most ``limit`` rows and
        ``max_bytes`` of bodies. Atomic with the mark, so a merge cannot change a row between
        being read for publishing and being protected from merging.
        """
        with self._lock, transaction(self._conn, self.path) as conn:
            rows = conn.execute(
                "SELECT id, kind, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
            batch: list[Row] = []
            size = 0
            for row_id, kind, body in rows:
                if batch and (kind != batch[0].kind or size + len(body) + 1 > max_bytes):
                    break
                batch.append(Row(int(row_id), kind, body))
                size += len(body) + 1
            conn.executemany(
                "UPDATE outbox SET sent = 1 WHERE id = ? AND sent = 0", [(r.id,) for r in batch]
            )
        return batch

    # -- reading ------------------------------------------------------------------------------

    def pending(self, limit: int, after: int = 0) -> list[Row]:
        """Up to ``limit`` rows with ``id > after``, oldest first."""
        with self._lock:
            try:
                rows = self._conn.execute(
                    "SELECT id, kind, body FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                    (after, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(self.path, str(exc)) from exc
        return [Row(int(r[0]), r[1], r[2]) for r in rows]

    def depth(self) -> int:
        """Rows waiting for the broker's acknowledgement (usage records and events)."""
        with self._lock:
            return self._depth

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (quickly, from the writing thread) after every add."""
        self._listeners.append(listener)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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
            "SELECT id, meter, merged, import_start, import_end, tariff FROM outbox"
            " WHERE kind = 'usage' AND sent = 0 ORDER BY id LIMIT ?",
            (MERGE_WINDOW,),
        ).fetchall()
        last: dict[str, _Candidate] = {}
        best: tuple[int, int, int] | None = None
        for row in rows:
            cand = _Candidate(*row)
            prev = last.get(cand.meter)
            last[cand.meter] = cand
            if prev is None or prev.import_end != cand.import_start or prev.tariff != cand.tariff:
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
        }
    )


def _tariff_key(record: UsageRecord) -> str:
    if record.tariff is None:
        return ""
    return f"{record.tariff}@{record.tariff_version}"
