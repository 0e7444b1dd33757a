"""A gateway whose store started over resumes a meter's seqs where the hub says (issue 14, item
5): its records still in the outbox move above the hub's seq, with a bridge record for the
energy used while it had no store, in ONE transaction; records the hub confirmed before are gone
and stay gone, other meters and events are untouched; a command bound to another store epoch
is refused before the replay memory is even consulted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.command_handler import CommandHandler
from agent.commands import CommandGate
from agent.credit import CreditBook
from agent.engine import Engine
from agent.errors import WrongEpoch
from agent.metering.intervals import MeterState, Point
from agent.resume import plan
from agent.settings import load
from agent.store import AgentStore
from agent.uplink.outbox import Outbox
from protocol.messages import CreditState, ResumePoint, UsageRecord
from protocol.receipts import build_receipt, verify_receipt
from protocol.signing import signed
from protocol.tariff import Tariff
from tests.agent.helpers import agent_config, meters, tcp_bus

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FLAT = Tariff.model_validate(
    {"id": "flat", "currency": "USD", "components": [{"provider": "p", "per_kwh": "100"}]}
)


def record(seq: int, wh: tuple[int, int], minutes: tuple[int, int]) -> UsageRecord:
    return UsageRecord(
        meter="m1",
        seq=seq,
        start=T0 + timedelta(minutes=minutes[0]),
        end=T0 + timedelta(minutes=minutes[1]),
        import_start=wh[0],
        import_end=wh[1],
    )


# -- the plan (pure) ----------------------------------------------------------------------------


def test_records_move_above_the_hub_with_a_bridge_from_its_register() -> None:
    first = record(1, (5000, 5100), (30, 45))
    state = MeterState("m1", 3, Point(T0, 5300), Point(T0, 5310))
    point = ResumePoint(seq=40, import_end=4200, end=T0 + timedelta(minutes=10))
    resumed = plan(point, state, first)
    assert resumed is not None
    assert resumed.shift == 41  # the bridge takes 41, seq 1 becomes 42
    assert resumed.bridge is not None
    bridge = resumed.bridge
    assert (bridge.seq, bridge.import_start, bridge.import_end) == (41, 4200, 5000)
    assert (bridge.start, bridge.end) == (point.end, first.start)
    assert resumed.state.seq == 44 and resumed.state.start == state.start


def test_no_bridge_where_the_records_already_join_or_cannot() -> None:
    point = ResumePoint(seq=40, import_end=5000, end=T0)
    joined = plan(point, MeterState("m1", 2), record(1, (5000, 5100), (30, 45)))
    assert joined is not None and joined.bridge is None and joined.shift == 40
    went_back = plan(point, MeterState("m1", 2), record(1, (10, 20), (30, 45)))
    assert went_back is not None and went_back.bridge is None  # the hub's register rule judges
    unknown = plan(ResumePoint(seq=40), MeterState("m1", 2), record(1, (6000, 6100), (30, 45)))
    assert unknown is not None and unknown.bridge is None and unknown.shift == 40


def test_a_point_already_below_changes_nothing() -> None:
    point = ResumePoint(seq=40, import_end=5000, end=T0)
    assert plan(point, MeterState("m1", 45), record(41, (5000, 5100), (30, 45))) is None
    assert plan(point, MeterState("m1", 40), None) is None


def test_without_records_the_open_interval_starts_at_the_hub_register() -> None:
    point = ResumePoint(seq=40, import_end=5000, end=T0)
    opened = plan(point, MeterState("m1", 0, Point(T0 + timedelta(minutes=5), 5200),
                                    Point(T0 + timedelta(minutes=6), 5210)), None)  # fmt: skip
    assert opened is not None and opened.bridge is None
    assert opened.state.seq == 40 and opened.state.start == Point(T0, 5000)
    fresh = plan(point, MeterState("m1"), None)
    assert fresh is not None and fresh.state.start == fresh.state.last == Point(T0, 5000)


# -- the engine: one transaction ----------------------------------------------------------------


@contextmanager
def engine_on(config: Path) -> Iterator[Engine]:
    settings = load(config)
    store = AgentStore(settings.storage.path)
    try:
        outbox = Outbox(store, 1000)
        gate = CommandGate(settings.security.command_key, store, epoch=outbox.epoch)
        yield Engine(settings, store, outbox, CreditBook(store), gate)
    finally:
        store.close()


def commits(store: AgentStore) -> list[str]:
    seen: list[str] = []
    store.conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def usage_rows(outbox: Outbox) -> list[tuple[str, int, int, int]]:
    rows = [UsageRecord.model_validate_json(r.body) for r in outbox.pending(100)
            if r.kind == "usage"]  # fmt: skip
    return sorted((r.meter, r.seq, r.import_start, r.import_end) for r in rows)


def intervals(engine: Engine, meter: str, readings: list[tuple[int, int]]) -> None:
    for second, wh in readings:
        engine._meter(meter, Point(T0 + timedelta(seconds=second), wh))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    config = agent_config(tmp_path, 1883, tcp_bus(5020), meters([1, 2]))
    with engine_on(config) as eng:
        yield eng


def test_resume_is_one_transaction_and_leaves_confirmed_rows_and_others_alone(
    engine: Engine,
) -> None:
    outbox = engine.outbox
    credit = engine.credit
    assert isinstance(outbox, Outbox) and isinstance(credit, CreditBook)
    credit.apply("m1", CreditState(balance=10_000, as_of_seq=0, tariff=FLAT))
    # m1: seqs 1..4 from 7000 Wh; m2: seqs 1..2; one event
    intervals(engine, "m1", [(0, 7000), (11, 7010), (22, 7030), (33, 7060), (44, 7100)])
    intervals(engine, "m2", [(0, 100), (11, 110), (22, 130)])
    engine.event("prompt", "m2", "hello")
    # the hub settled m1 seq 1 under this epoch (e.g. a record with no seq below it): gone
    first = outbox.next_batch(0, 1, 10_000)
    assert json.loads(first[0].body)["seq"] == 1
    key = "00" * 32
    receipt = verify_receipt(json.dumps(build_receipt(
        key, "gw", at=T0, epoch=outbox.epoch, usage={"m1": [1]})).encode(), key, "gw")  # fmt: skip
    assert outbox.confirm(receipt) == 1
    charges_before = credit.balance("m1")
    m2_before = [r for r in usage_rows(outbox) if r[0] == "m2"]
    depth = outbox.depth()

    seen = commits(engine.store)
    done = engine.resume("m1", ResumePoint(seq=50, import_end=6000, end=T0 - timedelta(hours=1)))

    assert seen == ["COMMIT"], "renumbering, bridge, charges and counter commit together"
    assert "3 records renumbered" in done
    m1 = [r for r in usage_rows(outbox) if r[0] == "m1"]
    # the bridge takes 51 (6000 -> 7010, where seq 2 starts); seqs 2..4 become 52..54
    assert m1 == [("m1", 51, 6000, 7010), ("m1", 52, 7010, 7030), ("m1", 53, 7030, 7060),
                  ("m1", 54, 7060, 7100)]  # fmt: skip
    assert [r for r in usage_rows(outbox) if r[0] == "m2"] == m2_before
    assert outbox.depth() == depth + 1  # the bridge; the confirmed seq 1 stays gone
    assert engine.states["m1"].seq == 54 and engine.metering.states()["m1"].seq == 54
    assert engine.states["m2"].seq == 2
    assert any(r.kind == "event" for r in outbox.pending(100))
    # charges moved with their records (none dropped at the next credit state), the bridge
    # charged: 1,010 Wh at 100.00 per kWh
    assert credit.balance("m1") == charges_before - 10_100
    credit.apply("m1", CreditState(balance=10_000, as_of_seq=50, tariff=FLAT))
    assert credit.balance("m1") == 10_000 - 10_100 - 200 - 300 - 400
    # the next interval continues above
    intervals(engine, "m1", [(55, 7150)])
    assert ("m1", 55, 7100, 7150) in usage_rows(outbox)
    # the same resume again changes nothing
    assert engine.resume("m1", ResumePoint(seq=50, import_end=6000, end=T0)).startswith(
        "already above"
    )


def test_a_failed_resume_leaves_everything_as_it_was(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = engine.outbox
    assert isinstance(outbox, Outbox)
    intervals(engine, "m1", [(0, 7000), (11, 7010), (22, 7030)])
    before = usage_rows(outbox)

    def crash(states: list[MeterState]) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(engine.metering, "save", crash)
    with pytest.raises(RuntimeError):
        engine.resume("m1", ResumePoint(seq=50, import_end=6000, end=T0 - timedelta(hours=1)))
    assert usage_rows(outbox) == before
    assert engine.states["m1"].seq == 2
    monkeypatch.undo()
    assert engine.metering.states()["m1"].seq == 2


# -- the command gate: epochs -------------------------------------------------------------------

KEY = "11" * 32
NOW = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)


def command(epoch: str | None, cid: str = "c1", issued: datetime = NOW) -> bytes:
    body = {"v": 1, "id": cid, "meter": "m1", "action": "disconnect",
            "issued_at": issued.isoformat(),
            "expires_at": (NOW + timedelta(minutes=10)).isoformat(), "reason": "x"}  # fmt: skip
    if epoch is not None:
        body["epoch"] = epoch
    return json.dumps(signed(body, KEY)).encode()


def test_a_command_bound_to_another_epoch_is_refused_first(tmp_path: Path) -> None:
    gate = CommandGate(KEY, tmp_path / "a.db", epoch="aaaaaaaaaaaaaaaa")
    with pytest.raises(WrongEpoch, match="bound to gateway epoch bbbbbbbbbbbbbbbb"):
        gate.accept(command("bbbbbbbbbbbbbbbb"), NOW)
    assert gate.accept(command("aaaaaaaaaaaaaaaa"), NOW).id == "c1"
    gate.close()


def test_an_unbound_command_from_before_the_store_began_is_refused(tmp_path: Path) -> None:
    gate = CommandGate(KEY, tmp_path / "a.db", epoch="aaaaaaaaaaaaaaaa", began=NOW)
    with pytest.raises(WrongEpoch, match="before this store began"):
        gate.accept(command(None, issued=NOW - timedelta(hours=1)), NOW)
    assert gate.accept(command(None, "c2", NOW - timedelta(minutes=1)), NOW).id == "c2"
    gate.close()


def test_the_refusal_tells_the_hub_it_was_the_epoch(engine: Engine) -> None:
    outbox = engine.outbox
    assert isinstance(outbox, Outbox)
    gate = CommandGate(KEY, engine.store, epoch=outbox.epoch)
    handler = CommandHandler(gate, engine.credit, engine)
    handler.handle(command("bbbbbbbbbbbbbbbb"), NOW)
    events = [json.loads(r.body) for r in outbox.pending(100) if r.kind == "event"]
    assert events[-1]["kind"] == "command_rejected"
    assert events[-1]["data"] == {"command": "c1", "epoch_mismatch": True}
