"""One fact, one event (issue 16): a cut-off, reconnection or low-credit prompt that the hub's
credit control and the gateway both record is stored once, ``data.sources`` naming both,
whichever side arrives first; the gateway's event id still deduplicates its resends."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select

from hub.db import read_tx, session_scope
from hub.events import FACT_WINDOW, record_event, same_fact
from hub.ingest import IngestService
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import publisher, table
from tests.hub.seed import World
from tests.support import wait_for

T = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
HUB = {"by": "credit_control", "rule": "exhausted", "command_id": "c-1"}
GW = {"gateway": "gw-0", "event_id": "e-1", "cause": "credit"}


@pytest.mark.parametrize(
    ("kind", "source", "at", "newest", "same"),
    [
        ("disconnect", "gateway", T, ("disconnect", T, HUB), True),
        ("disconnect", "credit_control", T, ("disconnect", T, GW), True),
        ("low_credit", "gateway", T, ("low_credit", T, HUB), True),
        ("disconnect", "gateway", T, ("disconnect", T, GW), False),  # the same side twice
        ("disconnect", "gateway", T, ("reconnect", T, HUB), False),  # a new fact after it
        ("disconnect", "gateway", T + FACT_WINDOW * 2, ("disconnect", T, HUB), False),
        ("disconnect", "gateway", T, ("disconnect", T, {**HUB, "sources": ["a", "b"]}), False),
        ("tamper", "gateway", T, ("tamper", T, HUB), False),  # not a fact both sides record
        ("disconnect", "gateway", T, None, False),
        ("disconnect", "operator", T, ("disconnect", T, {"by": "credit_control"}), False),
    ],
)
def test_same_fact(kind: str, source: str, at: datetime, newest: Any, same: bool) -> None:
    assert same_fact(kind, source, at, newest) is same


def _rows(engine: Engine, meter: str) -> list[Any]:
    events = table("events")
    with read_tx(engine) as conn:
        return list(conn.execute(select(events).where(events.c.meter_id == meter,
                                                      events.c.kind == "disconnect")))  # fmt: skip


def _hub_records(engine: Engine, meter: str) -> int:
    with session_scope(engine) as session:
        event = record_event(session, "disconnect", meter_id=meter, reason="credit exhausted",
                             data=dict(HUB))  # fmt: skip
        assert event.id is not None
        return event.id


@pytest.mark.parametrize("first", ["hub", "gateway"])
def test_a_cut_off_both_sides_record_is_one_event(
    first: str,
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    start_service(sqlite_engine)
    now = datetime.now(UTC)
    cause = {"rule": "exhausted", "cause": "credit"}
    ev = {"id": "ev-cut", "kind": "disconnect", "at": now.isoformat(), "meter": meter,
          "reason": "credit exhausted", "data": cause}  # fmt: skip
    with publisher(mosquitto.port) as pub:

        def gateway_reports() -> None:
            pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": [ev]}).encode())
            wait_for(lambda: "gateway" in str(_rows(sqlite_engine, meter)))

        if first == "hub":
            hub_id = _hub_records(sqlite_engine, meter)
            gateway_reports()
        else:
            gateway_reports()
            hub_id = _hub_records(sqlite_engine, meter)
        # the gateway sends it again (its receipt was lost): still one event
        pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": [ev]}).encode())
        pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": [
            {**ev, "id": "ev-later", "at": (now + timedelta(seconds=1)).isoformat(),
             "kind": "reconnect", "reason": "topped up"}]}).encode())  # fmt: skip
        wait_for(lambda: len(table_rows(sqlite_engine, meter)) == 2)
    (row,) = _rows(sqlite_engine, meter)
    assert row.id == hub_id
    assert row.data["sources"] == ["credit_control", "gateway"]
    assert row.data["event_id"] == "ev-cut" and row.data["command_id"] == "c-1"


def table_rows(engine: Engine, meter: str) -> list[Any]:
    events = table("events")
    with read_tx(engine) as conn:
        return list(conn.execute(select(events).where(events.c.meter_id == meter)))


def test_the_gateway_applying_the_hubs_prompt_joins_the_hubs_event(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    start_service(sqlite_engine)
    with session_scope(sqlite_engine) as session:
        record_event(session, "low_credit", meter_id=meter, reason="balance 90 below 100",
                     data={"by": "credit_control", "command_id": "cmd-p"})  # fmt: skip
    prompt = {"id": "ev-p", "kind": "prompt", "at": datetime.now(UTC).isoformat(),
              "meter": meter, "reason": "low", "data": {"command": "cmd-p"}}  # fmt: skip
    with publisher(mosquitto.port) as pub:
        pub.send(topic(gateway, "events"), json.dumps({"v": 1, "events": [prompt]}).encode())
        wait_for(lambda: "gateway" in str(table_rows(sqlite_engine, meter)))
    (row,) = table_rows(sqlite_engine, meter)
    assert (row.kind, row.data["sources"], row.data["event_id"]) == (
        "low_credit",
        ["credit_control", "gateway"],
        "ev-p",
    )
