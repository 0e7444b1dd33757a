"""The API with a live MQTT side (real Mosquitto, the real IngestService): operator commands and
top-up credit states reach the gateway's cmd topic signed; a relay reported off by the agent
is reconnected by a top-up; /metrics and /healthz show the ingest."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
import uvicorn

from hub.app import create_app
from hub.db import make_engine, migrate, session_scope
from hub.ingest import IngestService
from hub.models import Gateway
from hub.settings import HubSettings
from protocol import topics
from protocol.signing import verify
from tests.conftest import Broker
from tests.hub.api.conftest import Keys, build_world, new_key
from tests.support import free_port, wait_for


class Gw:
    """A stand-in gateway: a real paho client on the broker, collecting its commands."""

    def __init__(self, broker: Broker, gateway: str) -> None:
        self.commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{gateway}")
        self.client.on_message = lambda _c, _u, msg: self.commands.put(json.loads(msg.payload))
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.topic(gateway, "cmd"), qos=1)
        self.client.loop_start()
        assert self.subscribed.wait(10)
        self.gateway = gateway

    def next(self, action: str, timeout: float = 10) -> dict[str, Any]:
        """The next command with ``action`` (others, e.g. credit states, are skipped)."""
        deadline = datetime.now(UTC).timestamp() + timeout
        while True:
            left = deadline - datetime.now(UTC).timestamp()
            assert left > 0, f"no {action} command within {timeout} s"
            command = self.commands.get(timeout=left)
            if command["action"] == action:
                return command

    def report(self, kind: str, meter: str, reason: str) -> None:
        event = {"id": f"ev-{kind}-{meter}", "kind": kind, "at": datetime.now(UTC).isoformat(),
                 "meter": meter, "reason": reason}  # fmt: skip
        payload = json.dumps({"v": 1, "events": [event]})
        self.client.publish(topics.topic(self.gateway, "events"), payload, qos=1).wait_for_publish()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def mqtt_stack(
    tmp_path: Path, mosquitto: Broker
) -> Iterator[tuple[httpx.Client, Keys, IngestService, Gw, str]]:
    settings = HubSettings(db=f"sqlite:///{tmp_path / 'hub.db'}", mqtt=mosquitto.url)
    engine = make_engine(settings.db)
    migrate(engine)
    ingest = IngestService(engine, settings.mqtt, client_id="hub-test", credit_interval_s=0)
    app = create_app(settings, engine, ingest)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="uvicorn-mqtt", daemon=True)
    thread.start()
    gw: Gw | None = None
    try:
        wait_for(lambda: server.started, timeout=10)
        assert ingest.wait_connected(10)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            admin = new_key(engine, "admin")
            build_world(http, admin)
            keys = Keys(admin, new_key(engine, "operator"), new_key(engine, "customer", "c1"),
                        new_key(engine, "customer", "c2"))  # fmt: skip
            with session_scope(engine, write=False) as session:
                row = session.get(Gateway, "gw1")
                assert row is not None
                command_key = row.command_key
            gw = Gw(mosquitto, "gw1")
            yield http, keys, ingest, gw, command_key
    finally:
        if gw is not None:
            gw.close()
        server.should_exit = True
        thread.join(timeout=15)
        engine.dispose()


def test_operator_disconnect_reaches_the_gateway_signed(mqtt_stack: Any) -> None:
    http, keys, _ingest, gw, command_key = mqtt_stack
    r = http.post("/api/v1/meters/m1/disconnect", json={"reason": "meter tampering"},
                  headers=keys.h("operator"))  # fmt: skip
    assert r.status_code == 202
    assert r.json()["status"] == "sent"
    command = gw.next("disconnect")
    assert command["id"] == r.json()["command_id"]
    assert command["meter"] == "m1"
    assert verify(command, command_key)
    event = http.get("/api/v1/events?kind=disconnect", headers=keys.h("operator")).json()[-1]
    assert event["data"]["command_id"] == command["id"]


def test_topup_sends_credit_state_and_reconnects_a_cut_meter(mqtt_stack: Any) -> None:
    http, keys, ingest, gw, command_key = mqtt_stack
    gw.report("relay_off", "m1", "credit exhausted")
    wait_for(lambda: http.get("/api/v1/meters/m1", headers=keys.h("operator")).json()["relay"]
             == "off")  # fmt: skip
    r = http.post("/api/v1/accounts/c1/topups", json={"amount": "10.00", "reference": "cash"},
                  headers={**keys.h("customer"), "Idempotency-Key": "t1"})  # fmt: skip
    assert r.status_code == 201
    credit = gw.next("credit")
    assert verify(credit, command_key)
    assert credit["meter"] == "m1"
    assert credit["params"]["balance"] == 1000
    reconnect = gw.next("reconnect")
    assert verify(reconnect, command_key)
    assert reconnect["meter"] == "m1"
    # The replayed top-up tells nobody again (the notification runs before the answer).
    sent = ingest.counters["commands"]
    r = http.post("/api/v1/accounts/c1/topups", json={"amount": "10.00", "reference": "cash"},
                  headers={**keys.h("customer"), "Idempotency-Key": "t1"})  # fmt: skip
    assert r.status_code == 201
    assert ingest.counters["commands"] == sent
    health = http.get("/healthz").json()
    assert health == {"ok": True, "db": True, "mqtt": True}
    text = http.get("/metrics").text
    assert "smsa_ingest_events_total" in text
    assert "smsa_ingest_queue_depth 0" in text
