"""The agent's own tables in the SQLite file at ``storage.path`` (WAL): metering state, a
journal of records and events on their way to the outbox, and each relay's wanted state.

Why a seq can never carry two different records: a closed interval is committed together with
the meter's new state (its seq and the next interval's start) in ONE transaction, as a row of
``pending``; only then is it handed to the outbox, and only after the outbox took it is the
pending row deleted. A kill -9 before that commit loses nothing (the old state still holds the
open interval, which is rebuilt from the next reading under the same seq, and nothing with that
seq has left the process); a kill -9 after it finds the row in ``pending`` on restart and hands
the same bytes to the outbox again. At worst a record is handed over twice with identical data,
which the hub deduplicates by (meter, seq).
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from agent.metering.intervals import MeterState, Point
from protocol.messages import Event, UsageRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS agent_meter_state (
    meter TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    start_at TEXT, start_wh INTEGER, last_at TEXT, last_wh INTEGER
);
CREATE TABLE IF NOT EXISTS agent_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agent_relay (
    meter TEXT PRIMARY KEY, wanted TEXT NOT NULL, cause TEXT NOT NULL, at TEXT NOT NULL
);
"""


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


class MeteringStore:
    """Thread-safe (one connection behind a lock)."""

    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def states(self) -> dict[str, MeterState]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT meter, seq, start_at, start_wh, last_at, last_wh FROM agent_meter_state"
            ).fetchall()
        return {row[0]: _state(row) for row in rows}

    def commit(
        self, states: list[MeterState], records: list[UsageRecord], events: list[Event]
    ) -> list[int]:
        """Save new states and journal records/events in one transaction; the pending ids."""
        ids: list[int] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for st in states:
                    self._conn.execute(
                        "INSERT OR REPLACE INTO agent_meter_state VALUES (?, ?, ?, ?, ?, ?)",
                        (st.meter, st.seq, *_point(st.start), *_point(st.last)),
                    )
                for kind, items in (("usage", records), ("event", events)):
                    for item in items:
                        cur = self._conn.execute(
                            "INSERT INTO agent_pending (kind, payload) VALUES (?, ?)",
                            (kind, item.model_dump_json()),
                        )
                        assert cur.lastrowid is not None
                        ids.append(cur.lastrowid)
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return ids

    def pending(self) -> list[tuple[int, UsageRecord | Event]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, kind, payload FROM agent_pending ORDER BY id"
            ).fetchall()
        out: list[tuple[int, UsageRecord | Event]] = []
        for pid, kind, payload in rows:
            model = UsageRecord if kind == "usage" else Event
            out.append((pid, model.model_validate_json(payload)))
        return out

    def done(self, ids: list[int]) -> None:
        if not ids:
            return
        with self._lock:
            self._conn.executemany("DELETE FROM agent_pending WHERE id = ?", [(i,) for i in ids])

    def relays(self) -> dict[str, tuple[bool, str]]:
        """Each meter's wanted relay state (True = on) and its cause."""
        with self._lock:
            rows = self._conn.execute("SELECT meter, wanted, cause FROM agent_relay").fetchall()
        return {m: (w == "on", c) for m, w, c in rows}

    def want_relay(self, meter: str, on: bool, cause: str, at: datetime) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO agent_relay VALUES (?, ?, ?, ?)",
                (meter, "on" if on else "off", cause, at.isoformat()),
            )


def _point(p: Point | None) -> tuple[str | None, int | None]:
    return (None, None) if p is None else (p.at.isoformat(), p.wh)


def _state(row: tuple[str, int, str | None, int | None, str | None, int | None]) -> MeterState:
    meter, seq, start_at, start_wh, last_at, last_wh = row
    start = None if start_at is None or start_wh is None else Point(_dt(start_at), start_wh)
    last = None if last_at is None or last_wh is None else Point(_dt(last_at), last_wh)
    return MeterState(meter, seq, start, last)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)
