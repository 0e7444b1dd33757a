"""The metering journal: what a crash leaves between the state commit and the outbox is
handed to the outbox on the next start, with the same bytes; the seq survives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.app import Agent, new_event
from agent.commands import CommandGate
from agent.credit import CreditBook
from agent.metering.intervals import MeterState, Point, step
from agent.metering.store import MeteringStore
from agent.settings import load
from agent.uplink.outbox import Outbox
from protocol.messages import UsageRecord
from tests.agent.helpers import agent_config, meters, tcp_bus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _agent(config: Path) -> tuple[Agent, Outbox, list[object]]:
    settings = load(config)
    outbox = Outbox(settings.storage.path, 1000)
    credit = CreditBook(settings.storage.path)
    gate = CommandGate(settings.security.command_key, settings.storage.path)
    return Agent(settings, outbox, credit, gate), outbox, [outbox, credit, gate]


def test_journal_rows_reach_the_outbox_after_a_crash(tmp_path: Path) -> None:
    config = agent_config(tmp_path, 1883, tcp_bus(5020), meters([1]))
    db = tmp_path / "agent.db"
    # a previous run closed interval 1 and committed it, then died before the outbox took it
    store = MeteringStore(db)
    state, _ = step(MeterState("m1"), Point(T0, 1000), 10)
    state, out = step(state, Point(T0 + timedelta(seconds=11), 1030), 10)
    record = out[0].record()  # type: ignore[union-attr]
    event = new_event("register_reset", "m1", "test", old_wh=5, new_wh=1)
    store.commit([state], [record], [event])
    store.close()

    agent, outbox, closables = _agent(config)
    try:
        assert agent.states["m1"].seq == 1 and agent.states["m1"].start == Point(
            T0 + timedelta(seconds=11), 1030
        )
        agent._recover()
        assert outbox.depth() == 2
        assert agent.store.pending() == []
        rows = outbox.pending(10)
        assert [r.kind for r in rows] == ["usage", "event"]
        stored = UsageRecord.model_validate_json(rows[0].body)
        assert stored == record.model_copy(update={"epoch": outbox.epoch})
        agent.store.close()
    finally:
        for c in closables:
            c.close()  # type: ignore[attr-defined]

    # a second start finds nothing left to recover: no duplicate
    agent, outbox, closables = _agent(config)
    try:
        agent._recover()
        assert outbox.depth() == 2
        agent.store.close()
    finally:
        for c in closables:
            c.close()  # type: ignore[attr-defined]
