"""Issue 14 item 3: a gateway with valid credentials re-sends a register span under new seqs.

The energy posted for a meter follows its register (hub.rating.register): a record whose span
overlaps one already posted in its segment is quarantined with the reason and raised as a
``tamper`` event, never charged; a register reset the gateway reported starts a new segment and
stays billable; a late record fills the hole its seq left. Through BatchProcessor over a real
database (SQLite and PostgreSQL) and, for the attack, through Mosquitto and the ingest service.
"""

from __future__ import annotations

import json
import math
import shutil
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from hub.db import make_engine, migrate, read_tx
from hub.ingest import IngestService
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.ledger import check_invariants
from hub.rating.register import Claim
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import balances, posted, publisher, quarantined, table, usage
from tests.hub.register_streams import STEP, T0, Rec, meters, streams
from tests.hub.seed import World, seed_world
from tests.support import wait_for

TARIFF: dict[str, Any] = {
    "id": "flat",
    "currency": "USD",
    "components": [{"provider": "gen", "per_kwh": "0.20"}, {"provider": "grid", "per_kwh": "0.05"}],
}  # 0.25 a kWh: 40 kWh cost 10.00
CENTS_PER_KWH = 25
GW, METER = "gw-0", "gw-0-m0"


def rec(seq: int, start_wh: int, end_wh: int, at: float, until: float | None = None) -> Rec:
    """Record ``seq`` over the register span [start_wh, end_wh), intervals counted in STEPs."""
    return Rec(seq, start_wh, end_wh, T0 + STEP * at, T0 + STEP * (at + 1 if until is None
                                                                   else until))  # fmt: skip


def as_json(r: Rec, meter: str = METER) -> dict[str, Any]:
    return {"meter": meter, "seq": r.seq, "start": r.start_at.isoformat(),
            "end": r.end_at.isoformat(), "import_start": r.start_wh,
            "import_end": r.end_wh}  # fmt: skip


def reset_event(c: Claim, meter: str = METER) -> dict[str, Any]:
    """A register_reset event as the agent sends it (agent.app, ``Reset``)."""
    return {"id": uuid.uuid4().hex, "kind": "register_reset", "at": c.new_at.isoformat(),
            "meter": meter, "reason": f"import register went from {c.old_wh} to {c.new_wh} Wh",
            "data": {"old_wh": c.old_wh, "new_wh": c.new_wh, "old_at": c.old_at.isoformat(),
                     "new_at": c.new_at.isoformat()}}  # fmt: skip


def inbound(items: Sequence[Rec | Claim], now: datetime, gateway: str = GW) -> list[Inbound]:
    """One message per item: usage records and register_reset events."""
    out = []
    for item in items:
        if isinstance(item, Claim):
            body = json.dumps({"v": 1, "events": [reset_event(item)]}).encode()
            out.append(Inbound(topic(gateway, "events"), body, now))
        else:
            out.append(Inbound(topic(gateway, "usage"), usage([as_json(item)]), now))
    return out


def charged(engine: Engine, world: World, meter: str = METER) -> int:
    return -(balances(engine)[world.customers[meter]] - 10**9)


def events(engine: Engine, kind: str) -> list[tuple[str, dict[str, Any]]]:
    e = table("events")
    with read_tx(engine) as conn:
        rows = conn.execute(select(e.c.reason, e.c.data).where(e.c.kind == kind).order_by(e.c.id))
        return [(r[0], r[1]) for r in rows]


def segments(engine: Engine, meter: str = METER) -> list[tuple[int, int, int, int]]:
    p = table("posted_usage")
    with read_tx(engine) as conn:
        rows = conn.execute(select(p.c.seq, p.c.import_start, p.c.import_end, p.c.segment)
                            .where(p.c.meter_id == meter).order_by(p.c.seq))  # fmt: skip
        return [(int(a), int(b), int(c), int(d)) for a, b, c, d in rows]


def check(engine: Engine) -> dict[str, Any]:
    with read_tx(engine) as conn:
        return check_invariants(conn)


def assert_ok(engine: Engine) -> None:
    report = check(engine)
    assert report["ok"], {n: c["detail"] for n, c in report["checks"].items() if not c["ok"]}


@pytest.fixture
def world(engine: Engine) -> World:
    return seed_world(engine, gateways=1, meters_per_gateway=1, tariff=TARIFF)


HONEST = [rec(s, 1000 + 10_000 * (s - 1), 1000 + 10_000 * s, s - 1) for s in range(1, 5)]


def test_a_span_resent_under_new_seqs_charges_nothing(engine: Engine, world: World) -> None:
    """The issue's numbers: 4 records over 40 kWh, then that span again under 10 new seqs."""
    processor = BatchProcessor(engine)
    now = T0 + timedelta(days=1)
    processor.process(inbound(HONEST, now), now)
    assert charged(engine, world) == 40 * CENTS_PER_KWH
    # the same register span, under seqs 5..14, each with an interval of its own after the
    # last one (with the original intervals the copies overlap in time as well)
    replays = [rec(s, 1000, 41_000, s - 1) for s in range(5, 15)]
    outcome = processor.process(inbound(replays, now), now)
    assert outcome.counts["quarantined"] == 10 and outcome.counts["posted"] == 0
    assert charged(engine, world) == 40 * CENTS_PER_KWH
    tampers = events(engine, "tamper")
    assert [(d["rule"], d["seq"]) for _, d in tampers] == [
        ("register_overlap", s) for s in range(5, 15)]  # fmt: skip
    assert tampers[0][0] == (
        "seq 5 [1000, 41000) Wh overlaps posted seq 4, which ends at 41000 Wh, "
        "and no register_reset was reported in between"
    )
    assert [reason for _, reason in quarantined(engine)] == [r for r, _ in tampers]
    assert_ok(engine)
    # the meter's next interval is charged at once (not held behind the refused seqs)
    outcome = processor.process(inbound([rec(15, 41_000, 45_000, 14)], now), now)
    assert (outcome.counts["posted"], outcome.counts["held"]) == (1, 0)
    assert charged(engine, world) == 44 * CENTS_PER_KWH
    assert_ok(engine)


def test_copies_with_their_own_intervals_are_refused_too(engine: Engine, world: World) -> None:
    """Re-sent whole or in part, under new seqs or a seq never posted (a late one)."""
    processor = BatchProcessor(engine, hold_s=0)
    now = T0 + timedelta(days=1)
    first, second, third, fourth = HONEST
    processor.process(inbound([first, second, fourth], now), now)  # seq 3 skipped: a gap
    before = charged(engine, world)
    copies = [
        Rec(5, second.start_wh, second.end_wh, second.start_at, second.end_at),
        Rec(6, 12_000, 15_000, second.start_at, second.end_at),  # part of seq 2's span
        Rec(3, first.start_wh, first.end_wh, first.start_at, first.end_at),  # into the hole
    ]
    processor.process(inbound(copies, now), now)
    assert charged(engine, world) == before
    assert [d["rule"] for _, d in events(engine, "tamper")] == ["interval_overlap"] * 3
    # the real seq 3 still fits its hole
    processor.process(inbound([third], now), now)
    assert charged(engine, world) == 40 * CENTS_PER_KWH
    assert [s[:3] for s in segments(engine)] == [(r.seq, r.start_wh, r.end_wh) for r in HONEST]
    assert_ok(engine)


@pytest.mark.parametrize("reported", ["in an earlier batch", "in the same batch"])
def test_a_reported_register_reset_stays_billable(
    engine: Engine, world: World, reported: str
) -> None:
    processor = BatchProcessor(engine)
    now = T0 + timedelta(days=1)
    processor.process(inbound(HONEST, now), now)
    reset = Claim(41_000, 0, T0 + STEP * 4, T0 + STEP * 4 + timedelta(seconds=30))
    after = [Rec(5, 0, 500, reset.new_at, T0 + STEP * 5), rec(6, 500, 900, 5)]
    if reported == "in an earlier batch":
        processor.process(inbound([reset], now), now)
        processor.process(inbound(after, now), now)
    else:
        processor.process(inbound([*after, reset], now), now)  # events are read first
    assert charged(engine, world) - 40 * CENTS_PER_KWH in (22, 23)  # 0.9 kWh at 0.25 a kWh
    assert segments(engine)[-2:] == [(5, 0, 500, 1), (6, 500, 900, 1)]
    hubs = [e for e in events(engine, "register_reset") if "gateway" not in e[1]]
    ((reason, data),) = hubs  # the hub's own (the agent's event is stored too)
    assert reason == "register went back from 41000 to 0 Wh; segment 1 starts at seq 5"
    assert data == {"seq": 5, "segment": 1}
    # the reset opened one segment: the new register's span again is refused
    processor.process(inbound([rec(7, 0, 900, 6)], now), now)
    assert charged(engine, world) - 40 * CENTS_PER_KWH in (22, 23)
    assert [d["rule"] for _, d in events(engine, "tamper")] == ["register_overlap"]
    assert_ok(engine)
    detail = check(engine)["checks"]["energy_follows_register"]["detail"]
    assert (detail["segments"], detail["posted_wh"], detail["register_wh"]) == (2, 40_900, 40_900)


def test_a_register_going_back_unreported_is_refused(engine: Engine, world: World) -> None:
    """Until the gateway reports the reset: a record after the report opens the segment."""
    processor = BatchProcessor(engine)
    now = T0 + timedelta(days=1)
    processor.process(inbound([*HONEST, rec(5, 0, 500, 4)], now), now)
    assert charged(engine, world) == 40 * CENTS_PER_KWH
    ((_, reason),) = quarantined(engine)
    assert "no register_reset was reported" in reason
    reset = Claim(41_000, 0, T0 + STEP * 4, T0 + STEP * 4)
    processor.process(inbound([reset, rec(6, 500, 900, 5)], now), now)
    assert segments(engine)[-1] == (6, 500, 900, 1)
    assert_ok(engine)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("register") / "hub.db"
    migrate(f"sqlite:///{path}")
    return path


SLOW = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@settings(max_examples=25, deadline=None, suppress_health_check=SLOW)
@given(st.data())
def test_no_stream_charges_more_than_the_register_span(
    template: Path, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """Any stream a gateway can send for a meter (records dropped, repeated, reordered, copies
    under new seqs, its register resets reported, in batches of any size, some records held
    for their gap): the customer is charged at most the register's span times the tariff
    (the span plus what re-timed copies report ahead of the register, which no hub can tell
    from use still to come: tests/hub/rating/test_register.py), and the ledger check holds."""
    truth = data.draw(meters())
    stream = data.draw(streams(truth))
    path = tmp_path_factory.mktemp("example") / "hub.db"
    shutil.copyfile(template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        world = seed_world(engine, gateways=1, meters_per_gateway=1, tariff=TARIFF)
        processor = BatchProcessor(engine, hold_s=data.draw(st.sampled_from([0, 30])))
        items, now = stream.items, T0 + timedelta(days=1)
        while items:
            n = data.draw(st.integers(1, 6))
            processor.process(inbound(items[:n], now), now)
            items, now = items[n:], now + timedelta(seconds=data.draw(st.sampled_from([1, 60])))
        processor.release_due(now + timedelta(hours=1))
        energy = sum(end - start for _, start, end, _ in segments(engine))
        bound = truth.span + stream.ahead
        assert energy <= bound
        assert charged(engine, world) <= math.ceil(bound * CENTS_PER_KWH / 1000)
        assert_ok(engine)
    finally:
        engine.dispose()


def test_a_span_resent_through_the_broker_charges_nothing(
    sqlite_engine: Engine,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    """The attack end to end: Mosquitto, the ingest service (pump and settlers), the ledger."""
    world = seed_world(sqlite_engine, gateways=1, meters_per_gateway=1, tariff=TARIFF)
    service = start_service(sqlite_engine)
    with publisher(mosquitto.port) as pub:
        pub.usage(GW, [as_json(r) for r in HONEST])
        wait_for(lambda: posted(sqlite_engine) == 4)
        assert charged(sqlite_engine, world) == 40 * CENTS_PER_KWH
        for seq in range(5, 15):
            pub.usage(GW, [as_json(rec(seq, 1000, 41_000, seq - 1))])
        wait_for(lambda: len(quarantined(sqlite_engine)) == 10)
        reset = Claim(41_000, 0, T0 + STEP * 14, T0 + STEP * 14)
        pub.send(topic(GW, "events"), json.dumps({"v": 1, "events": [reset_event(reset)]})
                 .encode())  # fmt: skip
        pub.usage(GW, [as_json(rec(15, 0, 4000, 14))])
        wait_for(lambda: posted(sqlite_engine) == 5)
    assert charged(sqlite_engine, world) == 44 * CENTS_PER_KWH
    assert [d["rule"] for _, d in events(sqlite_engine, "tamper")] == ["register_overlap"] * 10
    assert service.counters["quarantined"] == 10
    assert segments(sqlite_engine)[-1] == (15, 0, 4000, 1)
    assert_ok(sqlite_engine)
