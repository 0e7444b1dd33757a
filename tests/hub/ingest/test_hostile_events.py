"""A gateway with valid credentials cannot spoof events (issue 14 item 4), against the real
ingest service (pump and settler processes) and Mosquitto.

- the payload cannot claim another gateway or event id (attributed by topic only);
- meter-less ``tamper`` and ``disconnect`` events do not reach the operator's counters;
- an event cannot acknowledge another gateway's command;
- a flood is held to a per-gateway quota; what is beyond it waits at the gateway (no receipt).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from hub.commands.store import enqueue, history
from hub.control.commands import build_command
from hub.db import read_tx, write_tx
from hub.ingest import IngestService
from hub.ingest.quota import EventQuota
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import Collector, publisher, table
from tests.hub.seed import World
from tests.support import wait_for

AT = "2026-03-01T10:00:00+00:00"


def _events(engine: Engine, kind: str | None = None) -> list[Any]:
    events = table("events")
    stmt = select(events) if kind is None else select(events).where(events.c.kind == kind)
    with read_tx(engine) as conn:
        return list(conn.execute(stmt))


def _send(pub: Any, gateway: str, *events: dict[str, Any]) -> None:
    pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": list(events)}).encode())


def test_events_are_attributed_by_topic_and_cannot_settle_anothers_command(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    pairs = list(world.meters.items())
    (mine, gw_a), (theirs, gw_b) = pairs[0], pairs[-1]
    assert gw_a != gw_b
    command = build_command(world.gateways[gw_b], theirs, "disconnect", reason="operator")
    with write_tx(sqlite_engine) as conn:
        enqueue(conn, gw_b, command)
    service = start_service(sqlite_engine)
    receipts = Collector(mosquitto.port, f"smsa/v1/gw/{gw_a}/receipt")
    try:
        with publisher(mosquitto.port) as pub:
            spoof = {"id": "ev-spoof", "kind": "relay", "at": AT, "meter": mine,
                     "data": {"gateway": gw_b, "event_id": "forged", "state": "on"}}  # fmt: skip
            meterless = [{"id": f"ev-{k}", "kind": k, "at": AT, "reason": "forged"}
                         for k in ("tamper", "disconnect")]  # fmt: skip
            claim = {"command": command["id"], "action": "disconnect", "ok": True}
            ack = {"id": "ev-ack", "kind": "command_ack", "at": AT, "meter": mine, "data": claim}
            _send(pub, gw_a, spoof, *meterless, ack)
            wait_for(lambda: service.counters["events"] >= 2 and service.counters["quarantined"]
                     >= 2, timeout=15)  # fmt: skip
        stored = _events(sqlite_engine, "relay")
        assert stored[0].data["gateway"] == gw_a and stored[0].data["event_id"] == "ev-spoof"
        assert not _events(sqlite_engine, "tamper") and not _events(sqlite_engine, "disconnect")
        with read_tx(sqlite_engine) as conn:
            assert history(conn, theirs)[0]["status"] in ("queued", "sent")  # not applied
        # the gateway is still told its events were settled (stored or quarantined)
        wait_for(lambda: receipts.messages, timeout=10)
        named = {e for _, p in receipts.messages for e in json.loads(p)["events"]}
        assert named == {"ev-spoof", "ev-tamper", "ev-disconnect", "ev-ack"}
    finally:
        receipts.close()


def test_an_event_flood_is_held_to_the_gateways_quota(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    service = start_service(sqlite_engine)
    receipts = Collector(mosquitto.port, f"smsa/v1/gw/{gateway}/receipt")
    burst = int(EventQuota().burst)
    flood = 20_000
    started = time.monotonic()
    try:
        with publisher(mosquitto.port) as pub:
            for first in range(0, flood, 1000):
                _send(pub, gateway, *({"id": f"f{n}", "kind": "relay", "at": AT, "meter": meter,
                                       "data": {"state": "on"}}
                                      for n in range(first, first + 1000)))  # fmt: skip
            wait_for(lambda: service.counters["events"] + service.counters["events_over_quota"]
                     >= flood, timeout=120)  # fmt: skip
        stored = len(_events(sqlite_engine, "relay"))
        # the burst, plus what refilled while the flood was being settled (20 a second)
        refilled = EventQuota().per_second * (time.monotonic() - started)
        assert burst <= stored <= burst + refilled + 1, (stored, refilled)
        assert len(_events(sqlite_engine, "event_quota")) == 1

        def confirmed() -> set[str]:
            return {e for _, p in receipts.messages for e in json.loads(p)["events"]}

        # each batch's receipt is published after its commit: wait for the last ones
        wait_for(lambda: len(confirmed()) >= stored, timeout=10)
        assert len(confirmed()) == stored, "an event beyond the quota must wait at the gateway"
    finally:
        receipts.close()


def test_the_quota_refills_at_its_rate() -> None:
    quota = EventQuota(burst=3, per_second=2.0)
    assert [quota.admit("gw", 0.0) for _ in range(4)] == [True, True, True, False]
    assert quota.admit("gw", 0.25) is False  # half a token
    assert quota.admit("gw", 0.5) is True
    assert quota.admit("other", 0.5) is True  # per gateway
