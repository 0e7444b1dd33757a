"""The metering tables in the agent's SQLite file: each meter's state and wanted relay state.

Why a seq can never carry two different records: the engine saves a meter's new state (its seq
and the next interval's start) in the SAME transaction that charges the closed interval to the
credit book and puts its record in the outbox (``Engine._meter``). A kill -9 before that commit
loses nothing (the old state still holds the open interval, which is rebuilt from the next
reading under the same seq, and nothing with that seq has left the process); after it, the
record is in the outbox.

Agents before this one committed the state with a journal row (``agent_pending``) and handed it
to the outbox in later transactions. :func:`hand_over_journal` moves what such an agent left
into the outbox once, at start, and drops the table.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Protocol

from agent.metering.intervals import MeterState, Point
from agent.store import AgentStore
from protocol.messages import Event, UsageRecord

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS agent_meter_state (
    meter TEXT PRIMARY KEY, seq INTEGER NOT NULL,
    start_at TEXT, start_wh INTEGER, last_at TEXT, last_wh INTEGER
)""",
    """CREATE TABLE IF NOT EXISTS agent_relay (
    meter TEXT PRIMARY KEY, wanted TEXT NOT NULL, cause TEXT NOT NULL, at TEXT NOT NULL
)""",
)


class MeteringStore:
    """Meter states and wanted relay states, through the agent's shared :class:`AgentStore`."""

    def __init__(self, store: AgentStore) -> None:
        self._store = store
        with store.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)

    def states(self) -> dict[str, MeterState]:
        with self._store.read() as conn:
            rows = conn.execute(
                "SELECT meter, seq, start_at, start_wh, last_at, last_wh FROM agent_meter_state"
            ).fetchall()
        return {row[0]: _state(row) for row in rows}

    def save(self, states: list[MeterState]) -> None:
        """Save ``states`` (in the caller's transaction, if one is open)."""
        with self._store.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO agent_meter_state VALUES (?, ?, ?, ?, ?, ?)",
                [(st.meter, st.seq, *_point(st.start), *_point(st.last)) for st in states],
            )

    def relays(self) -> dict[str, tuple[bool, str]]:
        """Each meter's wanted relay state (True = on) and its cause."""
        with self._store.read() as conn:
            rows = conn.execute("SELECT meter, wanted, cause FROM agent_relay").fetchall()
        return {m: (w == "on", c) for m, w, c in rows}

    def want_relay(self, meter: str, on: bool | None, cause: str, at: datetime) -> None:
        """Persist what is wanted of ``meter``'s relay (None: nothing, the agent leaves it be)."""
        with self._store.transaction() as conn:
            if on is None:
                conn.execute("DELETE FROM agent_relay WHERE meter = ?", (meter,))
                return
            conn.execute(
                "INSERT OR REPLACE INTO agent_relay VALUES (?, ?, ?, ?)",
                (meter, "on" if on else "off", cause, at.isoformat()),
            )


class OutboxLike(Protocol):
    """What :func:`hand_over_journal` needs of the outbox."""

    def add_usage(self, record: UsageRecord) -> object: ...
    def add_event(self, event: Event) -> object: ...


def hand_over_journal(store: AgentStore, outbox: OutboxLike) -> int:
    """Move the rows an older agent left in ``agent_pending`` into ``outbox`` (same bytes, in
    their order) and drop the table, in one transaction; the number of rows moved."""
    with store.transaction() as conn:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'agent_pending'"
        ).fetchone()
        if found is None:
            return 0
        rows = conn.execute("SELECT kind, payload FROM agent_pending ORDER BY id").fetchall()
        for kind, payload in rows:
            if kind == "usage":
                outbox.add_usage(UsageRecord.model_validate_json(payload))
            else:
                outbox.add_event(Event.model_validate_json(payload))
        conn.execute("DROP TABLE agent_pending")
    if rows:
        log.warning("moved %d records/events an older agent journalled into the outbox", len(rows))
    return len(rows)


def _point(p: Point | None) -> tuple[str | None, int | None]:
    return (None, None) if p is None else (p.at.isoformat(), p.wh)


def _state(row: tuple[str, int, str | None, int | None, str | None, int | None]) -> MeterState:
    meter, seq, start_at, start_wh, last_at, last_wh = row
    start = None if start_at is None or start_wh is None else Point(_dt(start_at), start_wh)
    last = None if last_at is None or last_wh is None else Point(_dt(last_at), last_wh)
    return MeterState(meter, seq, start, last)


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)
