"""The planner's batched reads on SQLite and PostgreSQL: a late record's posted neighbours and
month-to-date energy (``reads.late_context``), and the gateways' reset claims
(``reads.reset_claims``), each several records or meters in one statement."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from sqlalchemy import Engine

from hub.db import read_tx
from hub.ingest import reads
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.ingest.plan import Late
from hub.ingest.reads import late_context, reset_claims
from hub.rating.register import Claim, Edge
from hub.rating.tariffs import load_histories
from protocol.messages import Event, UsageRecord
from protocol.topics import topic
from tests.hub.ingest.helpers import records_for, usage
from tests.hub.seed import seed_world

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_late_records_read_their_neighbours_and_month_to_date_in_one_go(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "LATE_CHUNK", 2)  # three records: two statements
    world = seed_world(engine, gateways=1, meters_per_gateway=2)
    m0, m1 = sorted(world.meters)
    stream = [UsageRecord.model_validate(r) for r in records_for(m0, 6)]
    sent = [stream[i] for i in (0, 1, 3, 4)]  # seq 3 skipped at once (hold 0), 6 not sent
    body = usage([json.loads(r.model_dump_json(exclude_none=True)) for r in sent])
    BatchProcessor(engine, hold_s=0).process([Inbound(topic("gw-0", "usage"), body, NOW)], NOW)
    other = UsageRecord.model_validate(records_for(m1, 1)[0])
    with read_tx(engine) as conn:
        (history,) = load_histories(conn, [world.tariff.id]).values()
        late = [(r, history.at(r.end)) for r in (stream[2], stream[5], other)]
        found = late_context(conn, late)
    one, two, four, five = sent
    assert found == {
        (m0, 3): Late(Edge(2, two.import_end, two.end, 0), Edge(4, four.import_start,
                                                               four.start, 0),
                      Fraction(one.energy + two.energy)),
        (m0, 6): Late(Edge(5, five.import_end, five.end, 0), None,
                      Fraction(one.energy + two.energy + four.energy + five.energy)),
        (m1, 1): Late(None, None, Fraction(0)),
    }  # fmt: skip


def test_reset_claims_are_read_for_several_meters_at_once(engine: Engine) -> None:
    world = seed_world(engine, gateways=2, meters_per_gateway=1)
    (m0, gw0), (m1, gw1) = sorted(world.meters.items())
    at = datetime(2026, 3, 1, tzinfo=UTC)
    stored, pending = (
        Claim(5000, 10, at, at),
        Claim(900, 0, at + timedelta(hours=1), at + timedelta(hours=1)),
    )

    def event(c: Claim, meter: str) -> Event:
        return Event.model_validate(
            {
                "id": f"{meter}-{c.old_wh}",
                "kind": "register_reset",
                "at": c.new_at.isoformat(),
                "meter": meter,
                "data": {
                    "old_wh": c.old_wh,
                    "new_wh": c.new_wh,
                    "old_at": c.old_at.isoformat(),
                    "new_at": c.new_at.isoformat(),
                },
            }
        )

    body = json.dumps({"v": 1, "events": [
        json.loads(event(stored, m0).model_dump_json())]}).encode()  # fmt: skip
    BatchProcessor(engine).process([Inbound(topic(gw0, "events"), body, NOW)], NOW)
    batch = [(gw0, event(pending, m0)), (gw1, event(pending, m0)), (gw1, event(stored, m1))]
    with read_tx(engine) as conn:
        claims = reset_claims(conn, {m0: gw0, m1: gw1}, batch)
    # a gateway's own claims only: stored, then this batch's
    assert claims == {m0: [stored, pending], m1: [stored]}
