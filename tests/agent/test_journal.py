"""A closed interval is one transaction: the meter's state, the credit charge and the outbox row
commit together or not at all, so a crash never leaves a seq behind that could carry two
different records. What an older agent left in its journal (``agent_pending``) reaches the
outbox on the next start, with the same bytes, once."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.commands import CommandGate
from agent.credit import CreditBook
from agent.engine import Engine
from agent.events import new_event
from agent.metering.intervals import MeterState, Point, step
from agent.metering.store import MeteringStore, hand_over_journal
from agent.settings import load
from agent.store import AgentStore
from agent.uplink.outbox import Outbox
from protocol.messages import CreditState, UsageRecord
from protocol.tariff import Tariff
from tests.agent.helpers import agent_config, meters, tcp_bus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLAT = Tariff.model_validate(
    {"id": "flat", "currency": "USD", "components": [{"provider": "p", "per_kwh": "100"}]}
)
# the journal of agents before the one-transaction store (agent/metering/store.py then)
OLD_JOURNAL = """CREATE TABLE agent_pending (
    id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL)"""


@contextmanager
def engine_on(config: Path) -> Iterator[Engine]:
    settings = load(config)
    store = AgentStore(settings.storage.path)
    try:
        outbox = Outbox(store, 1000)
        gate = CommandGate(settings.security.command_key, store)
        yield Engine(settings, store, outbox, CreditBook(store), gate)
    finally:
        store.close()


def commits(store: AgentStore) -> list[str]:
    """The COMMITs the store's connection runs from now on."""
    seen: list[str] = []
    store.conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def test_a_closed_interval_is_one_transaction(tmp_path: Path) -> None:
    config = agent_config(tmp_path, 1883, tcp_bus(5020), meters([1]))
    with engine_on(config) as engine:
        assert isinstance(engine.credit, CreditBook)
        engine.credit.apply("m1", CreditState(balance=1000, as_of_seq=0, tariff=FLAT))
        engine._meter("m1", Point(T0, 1000))
        seen = commits(engine.store)
        engine._meter("m1", Point(T0 + timedelta(seconds=11), 1030))  # closes seq 1
        assert seen == ["COMMIT"]
        assert engine.outbox.depth() == 1 and engine.credit.balance("m1") == 700
        assert engine.metering.states()["m1"].seq == 1


def test_a_failed_interval_leaves_nothing_and_closes_again_under_its_seq(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = agent_config(tmp_path, 1883, tcp_bus(5020), meters([1]))
    with engine_on(config) as engine:
        assert isinstance(engine.credit, CreditBook) and isinstance(engine.outbox, Outbox)
        outbox = engine.outbox
        engine.credit.apply("m1", CreditState(balance=1000, as_of_seq=0, tariff=FLAT))
        engine._meter("m1", Point(T0, 1000))
        add_usage = outbox.add_usage

        def crash(record: UsageRecord) -> int:
            add_usage(record)  # the row is written inside the transaction ...
            raise OSError("disk gone")  # ... which then fails before its commit

        monkeypatch.setattr(outbox, "add_usage", crash)
        engine._meter("m1", Point(T0 + timedelta(seconds=11), 1030))
        # nothing of seq 1 is stored: no state, no charge, no outbox row
        assert engine.states["m1"].seq == 0 and "m1" not in engine.metering.states()
        assert engine.credit.balance("m1") == 1000
        assert outbox.depth() == 0 and outbox.pending(10) == []
        monkeypatch.setattr(outbox, "add_usage", add_usage)
        engine._meter("m1", Point(T0 + timedelta(seconds=12), 1040))  # the next reading
        [row] = outbox.pending(10)
        record = UsageRecord.model_validate_json(row.body)
        assert (record.seq, record.import_start, record.import_end) == (1, 1000, 1040)
        assert engine.credit.balance("m1") == 600 and outbox.depth() == 1


def test_an_older_agents_journal_reaches_the_outbox_once(tmp_path: Path) -> None:
    config = agent_config(tmp_path, 1883, tcp_bus(5020), meters([1]))
    db = tmp_path / "agent.db"
    # an older agent closed interval 1, committed it to its journal, then died before the
    # outbox took it
    state, _ = step(MeterState("m1"), Point(T0, 1000), 10)
    state, out = step(state, Point(T0 + timedelta(seconds=11), 1030), 10)
    record = out[0].record()  # type: ignore[union-attr]
    event = new_event("register_reset", "m1", "test", old_wh=5, new_wh=1)
    store = AgentStore(db)
    MeteringStore(store).save([state])
    with store.transaction() as conn:
        conn.execute(OLD_JOURNAL)
        for kind, item in (("usage", record), ("event", event)):
            conn.execute(
                "INSERT INTO agent_pending (kind, payload) VALUES (?, ?)",
                (kind, item.model_dump_json()),
            )
    store.close()

    with engine_on(config) as engine:
        assert isinstance(engine.outbox, Outbox)
        assert engine.states["m1"].seq == 1
        assert engine.states["m1"].start == Point(T0 + timedelta(seconds=11), 1030)
        assert hand_over_journal(engine.store, engine.outbox) == 2
        rows = engine.outbox.pending(10)
        assert [r.kind for r in rows] == ["usage", "event"]
        stored = UsageRecord.model_validate_json(rows[0].body)
        assert stored == record.model_copy(update={"epoch": engine.outbox.epoch})
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "agent_pending" not in tables

    # a second start finds nothing left to hand over: no duplicate
    with engine_on(config) as engine:
        assert hand_over_journal(engine.store, engine.outbox) == 0
        assert engine.outbox.depth() == 2
