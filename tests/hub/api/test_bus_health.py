"""Operators see each meter's bus health (issue 15, item 7): the counters a gateway's online
status reports per meter reach ``GET /meters/{id}`` through Mosquitto and a real ingest service;
a gateway cannot report for another gateway's meter, and a bad report is left out without
losing the rest of the status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine

from hub.ingest.bus import bus_reports
from hub.ingest.service import IngestService
from protocol.messages import Status
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.api.conftest import Keys
from tests.hub.ingest.helpers import publisher
from tests.support import wait_for

BUS = {"requests": 120, "errors": 7, "timeouts": 5, "exceptions": 1, "connection": 0,
       "frame": 1, "polls": 100, "failed_polls": 2, "skipped": 3, "state": "ok",
       "last_error": "timeout"}  # fmt: skip


def status(meters: dict[str, Any], state: str = "online") -> bytes:
    return json.dumps({"v": 1, "state": state, "meters": meters}).encode()


def meter(client: httpx.Client, keys: Keys, meter_id: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/meters/{meter_id}", headers=keys.h("operator"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_bus_counters_reach_the_meter_and_stay_with_their_gateway(
    client: httpx.Client, keys: Keys, api_engine: Engine, mosquitto: Broker
) -> None:
    admin = keys.h("admin")
    assert client.post("/api/v1/gateways", json={"id": "gw2"}, headers=admin).status_code == 201
    body = {"id": "m3", "gateway": "gw2", "customer": "c2", "tariff": "t1"}
    assert client.post("/api/v1/meters", json=body, headers=admin).status_code == 201
    assert meter(client, keys, "m1")["bus"] is None  # nothing reported yet
    service = IngestService(api_engine, mosquitto.url, client_id="hub-bus", batch_wait_s=0.02)
    service.start()
    try:
        assert service.wait_connected(10)
        with publisher(mosquitto.port) as pub:
            garbage = {**BUS, "errors": -1}
            pub.send(topic("gw1", "status"), status({
                "m1": {"state": "ok", "relay": "on", "seq": 4, "bus": BUS},
                "m2": {"bus": garbage},  # refused: a counter below zero
                "m3": {"bus": {**BUS, "requests": 999}},  # gw2's meter: not gw1's to report
            }))  # fmt: skip
            m1 = wait_for(lambda: meter(client, keys, "m1")["bus"])
            assert {k: m1[k] for k in BUS} == BUS
            assert meter(client, keys, "m1")["online"] is True  # the rest of the status counted
            assert meter(client, keys, "m2")["bus"] is None
            assert meter(client, keys, "m3")["bus"] is None
            pub.send(topic("gw2", "status"), status({"m3": {"bus": {**BUS, "requests": 5}}}))
            assert wait_for(lambda: meter(client, keys, "m3")["bus"])["requests"] == 5
            newer = {**BUS, "requests": 130, "state": "failing"}
            pub.send(topic("gw1", "status"), status({"m1": {"bus": newer}}))
            wait_for(lambda: meter(client, keys, "m1")["bus"]["requests"] == 130)
            assert meter(client, keys, "m1")["bus"]["state"] == "failing"
    finally:
        service.stop()
    assert client.get("/api/v1/meters/m1", headers=keys.h("customer")).status_code == 403


def test_bus_reports_reads_only_owned_valid_online_entries() -> None:
    at = datetime(2026, 12, 4, tzinfo=UTC)
    online = Status.model_validate({"state": "online", "meters": {
        "a": {"bus": BUS}, "b": {"bus": {**BUS, "state": "exploded"}}, "c": {"bus": BUS},
        "d": "not a dict", "e": {"relay": "on"},
    }})  # fmt: skip
    rows = bus_reports("gw", online, {"a", "b", "d", "e"}, at)
    assert [r["meter_id"] for r in rows] == ["a"]
    assert rows[0]["reported_at"] == at and rows[0]["requests"] == 120
    offline = Status.model_validate({"state": "offline", "meters": {"a": {"bus": BUS}}})
    assert bus_reports("gw", offline, {"a"}, at) == []
    assert bus_reports("gw", Status(state="online"), {"a"}, at) == []
    weird = Status.model_validate({"state": "online", "meters": ["a"]})
    assert bus_reports("gw", weird, {"a"}, at) == []
