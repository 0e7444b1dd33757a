"""GET /metrics through prometheus-client: it parses as the Prometheus text format, names API
latency by route template, carries the process metrics and the gauges counted in the database,
and its histograms move when real traffic goes through the broker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.api.conftest import Keys
from tests.hub.api.stack import Stack, running_hub
from tests.hub.ingest.helpers import publisher, records_for
from tests.support import wait_for

HISTOGRAMS = (
    "smsa_ingest_latency_seconds",
    "smsa_ingest_batch_messages",
    "smsa_settle_seconds",
    "smsa_command_round_trip_seconds",
)


def scrape(http: httpx.Client) -> dict[str, Metric]:
    r = http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(r.text)}


def value(families: dict[str, Metric], sample: str, **labels: str) -> float:
    """The sum of the samples named ``sample`` whose labels include ``labels`` (0 for none)."""
    return sum(
        s.value
        for family in families.values()
        for s in family.samples
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_metrics_parse_with_process_metrics_and_routes_by_template(
    client: httpx.Client, keys: Keys
) -> None:
    assert client.get("/api/v1/meters/m1", headers=keys.h("operator")).status_code == 200
    assert client.get("/api/v1/meters/no-such", headers=keys.h("operator")).status_code == 404
    assert client.get("/no/such/page").status_code == 404
    families = scrape(client)

    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_gc_collections"):
        assert name in families, name
    assert families["smsa_records_ingested"].type == "gauge"

    http = families["smsa_http_request_duration_seconds"]
    assert http.type == "histogram"
    routes = {s.labels["route"] for s in http.samples}
    assert {"/api/v1/meters/{meter_id}", "unmatched"} <= routes, routes
    assert not any("m1" in route or "no-such" in route for route in routes), routes
    count = "smsa_http_request_duration_seconds_count"
    meter = {"method": "GET", "route": "/api/v1/meters/{meter_id}"}
    assert value(families, count, **meter, status="200") == 1
    assert value(families, count, **meter, status="404") == 1


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Broker) -> Iterator[Stack]:
    with running_hub(tmp_path, mosquitto) as running:
        yield running


def test_the_histograms_move_under_load(stack: Stack, mosquitto: Broker) -> None:
    before = scrape(stack.http)
    for name in HISTOGRAMS:
        assert before[name].type == "histogram", name

    # Usage through the broker, as the gateway's agent sends it: 5 messages of 20 records.
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    records = records_for("m1", 100, t0=t0)
    with publisher(mosquitto.port) as pub:
        for i in range(0, 100, 20):
            pub.usage("gw1", records[i : i + 20])
    wait_for(lambda: stack.ingest.counters["posted"] + stack.ingest.counters["quarantined"]
             >= 100, timeout=30)  # fmt: skip

    # An operator command and its agent's acknowledgement: one round trip.
    r = stack.http.post("/api/v1/meters/m1/disconnect", json={"reason": "metrics test"},
                        headers=stack.keys.h("operator"))  # fmt: skip
    assert r.status_code == 202
    command = stack.gw.next("disconnect")
    ack = {"id": "ack-1", "kind": "command_ack", "at": datetime.now(UTC).isoformat(),
           "meter": "m1", "reason": "relay open", "data": {"command": command["id"]}}  # fmt: skip
    stack.gw.client.publish(topic("gw1", "events"), json.dumps({"v": 1, "events": [ack]}),
                            qos=1).wait_for_publish(10)  # fmt: skip
    wait_for(lambda: stack.ingest.counters["commands_settled"] >= 1, timeout=15)

    after = scrape(stack.http)
    for name in HISTOGRAMS:
        grew = value(after, f"{name}_count") - value(before, f"{name}_count")
        assert grew >= 1, name
    assert value(after, "smsa_ingest_batch_messages_sum") >= 5
    assert value(after, "smsa_ingest_latency_seconds_sum") > 0
    disconnect = {"method": "POST", "route": "/api/v1/meters/{meter_id}/disconnect"}
    assert value(after, "smsa_http_request_duration_seconds_count", **disconnect) == 1
    assert value(after, "smsa_ingest_received_total") >= 6
