"""The API with a live MQTT side (real Mosquitto, the real IngestService): operator commands and
top-up credit states and tariff updates reach the gateway's cmd topic signed; /metrics and
/healthz show the ingest. Reconnect decisions belong to credit control (tests/hub/control)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol.signing import verify
from tests.conftest import Broker
from tests.hub.api.stack import Stack, running_hub
from tests.support import wait_for


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Broker) -> Iterator[Stack]:
    with running_hub(tmp_path, mosquitto) as running:
        yield running


def test_operator_disconnect_reaches_the_gateway_signed(stack: Stack) -> None:
    http, keys, gw, command_key = stack.http, stack.keys, stack.gw, stack.command_key
    r = http.post("/api/v1/meters/m1/disconnect", json={"reason": "meter tampering"},
                  headers=keys.h("operator"))  # fmt: skip
    assert r.status_code == 202
    assert r.json()["status"] == "queued"
    command = gw.next("disconnect")
    assert command["id"] == r.json()["command_id"]
    assert command["meter"] == "m1"
    assert verify(command, command_key)
    event = http.get("/api/v1/events?kind=disconnect", headers=keys.h("operator")).json()[-1]
    assert event["data"]["command_id"] == command["id"]


def test_topup_sends_the_credit_state(stack: Stack) -> None:
    http, keys, gw, command_key = stack.http, stack.keys, stack.gw, stack.command_key
    ingest = stack.ingest
    r = http.post("/api/v1/accounts/c1/topups", json={"amount": "10.00", "reference": "cash"},
                  headers={**keys.h("admin"), "Idempotency-Key": "t1"})  # fmt: skip
    assert r.status_code == 201
    credit = gw.next("credit")
    assert verify(credit, command_key)
    assert credit["meter"] == "m1"
    assert credit["params"]["balance"] == 1000
    # The replayed top-up tells nobody again (the notification runs before the answer). The
    # pump counts a command after handing it to the broker, which can be after it arrived.
    wait_for(lambda: ingest.counters["commands"] >= 1)
    sent = ingest.counters["commands"]
    r = http.post("/api/v1/accounts/c1/topups", json={"amount": "10.00", "reference": "cash"},
                  headers={**keys.h("admin"), "Idempotency-Key": "t1"})  # fmt: skip
    assert r.status_code == 201
    assert ingest.counters["commands"] == sent
    health = http.get("/healthz").json()
    assert health == {"ok": True, "db": True, "mqtt": True}
    text = http.get("/metrics").text
    assert "smsa_ingest_events_total" in text
    assert "smsa_ingest_queue_depth 0" in text


def test_new_tariff_version_is_sent_to_the_meters(stack: Stack) -> None:
    body = {"currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.40"}]}
    r = stack.http.post("/api/v1/tariffs/t1/versions", json=body, headers=stack.keys.h("admin"))
    assert r.status_code == 201
    sent: dict[str, Any] = {}
    while len(sent) < 2:
        credit = stack.gw.next("credit")
        assert verify(credit, stack.command_key)
        sent[credit["meter"]] = credit["params"]["tariff"]
    assert sent["m1"]["version"] == sent["m2"]["version"] == 2
    assert [(c["provider"], c["per_kwh"]) for c in sent["m1"]["components"]] == [("gen", "0.40")]
