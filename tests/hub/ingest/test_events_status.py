"""Gateway events (stored once per id, relay state followed), gateway status (meters online
or offline), and records held for a seq gap: released in order, or after the hold time."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from hub.db import read_tx
from hub.ingest import IngestService
from hub.ledger import check_invariants
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import count, posted, publisher, records_for, table
from tests.hub.seed import World
from tests.support import wait_for


def _meter(engine: Engine, meter: str) -> Any:
    meters = table("meters")
    with read_tx(engine) as conn:
        return conn.execute(select(meters).where(meters.c.id == meter)).one()


def _events(engine: Engine, kind: str) -> list[Any]:
    events = table("events")
    with read_tx(engine) as conn:
        return list(conn.execute(select(events).where(events.c.kind == kind)))


def test_events_are_stored_once_and_drive_relay_and_online(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    service = start_service(sqlite_engine)
    off = {"id": "ev-1", "kind": "relay_off", "at": "2026-03-01T10:00:00+00:00",
           "meter": meter, "reason": "credit exhausted", "data": {"rule": "cutoff"}}  # fmt: skip
    on = {"id": "ev-2", "kind": "relay", "at": "2026-03-01T11:00:00+00:00", "meter": meter,
          "data": {"state": "on"}}  # fmt: skip
    with publisher(mosquitto.port) as pub:
        pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": [off]}).encode())
        wait_for(lambda: _meter(sqlite_engine, meter).relay == "off")
        pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": [off, on]}).encode())
        wait_for(lambda: _meter(sqlite_engine, meter).relay == "on")
        wait_for(lambda: service.counters["duplicate_events"] == 1)
        stored = _events(sqlite_engine, "relay_off")
        assert len(stored) == 1
        assert stored[0].reason == "credit exhausted"
        assert stored[0].data["event_id"] == "ev-1" and stored[0].data["rule"] == "cutoff"

        pub.usage(gateway, records_for(meter, 1))
        wait_for(lambda: _meter(sqlite_engine, meter).online)
        pub.send(topic(gateway, "status"), b'{"v": 1, "state": "offline"}', retain=True)
        wait_for(lambda: not _meter(sqlite_engine, meter).online)
        wait_for(lambda: len(_events(sqlite_engine, "meter_offline")) == 1)
        # the retained status again (a hub restart re-reads it): no second event
        pub.send(topic(gateway, "status"), b'{"v": 1, "state": "offline"}', retain=True)
        wait_for(lambda: service.counters["statuses"] == 2)
        assert len(_events(sqlite_engine, "meter_offline")) == 1
        pub.send(topic(gateway, "status"), b'{"v": 1, "state": "online"}', retain=True)
        wait_for(lambda: _meter(sqlite_engine, meter).online)
        # the gateway's return is an event of its own, for the operator's feed
        back = wait_for(lambda: _events(sqlite_engine, "meter_online"))
        assert [(e.meter_id, e.data["gateway"]) for e in back] == [(meter, gateway)]
        pub.send(topic(gateway, "status"), b"", retain=True)  # clear the retained message


def test_a_gap_is_held_then_filled_or_skipped_after_the_hold_time(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    (m1, gw1), (m2, gw2) = list(world.meters.items())[:2]
    # long enough that a loaded machine does not release m1's records before 3 arrives
    service = start_service(sqlite_engine, hold_s=5.0)
    first, second = records_for(m1, 6), records_for(m2, 4)
    with publisher(mosquitto.port) as pub:
        # m1: 1, 2, then 4..6 -- held until 3 arrives
        pub.usage(gw1, first[:2] + first[3:])
        wait_for(lambda: posted(sqlite_engine) == 2 and service.counters["held"] == 3)
        pub.usage(gw1, [first[2]])
        wait_for(lambda: posted(sqlite_engine) == 6 and count(sqlite_engine, "usage_pending") == 0)
        assert _meter(sqlite_engine, m1).last_seq == 6
        # m2: 1, then 3, 4; 2 never comes in time: after the hold 3 and 4 are posted anyway
        pub.usage(gw2, [second[0], second[2], second[3]])
        wait_for(lambda: posted(sqlite_engine) == 9, timeout=20)
        wait_for(lambda: len(_events(sqlite_engine, "seq_gap")) == 1)
        # 2 arrives late: posted once, out of order
        pub.usage(gw2, [second[1]])
        wait_for(lambda: posted(sqlite_engine) == 10)
        wait_for(lambda: service.counters["late"] == 1)
    with read_tx(sqlite_engine) as conn:
        report = check_invariants(conn)
    assert report["ok"], report
