"""A running hub with its MQTT side: real Mosquitto, the real IngestService, the app under
uvicorn; and a stand-in gateway (a paho client) that reports events and collects commands."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import uvicorn

from hub.app import build_app
from hub.compose import IngestOptions, compose
from hub.db import make_engine, migrate, session_scope
from hub.ingest import IngestService
from hub.models import Gateway
from hub.settings import HubSettings
from protocol import topics
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
        self._events = 0

    def next(self, action: str, timeout: float = 10) -> dict[str, Any]:
        """The next command with ``action`` (others, e.g. credit states, are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {action} command within {timeout} s"
            command = self.commands.get(timeout=left)
            if command["action"] == action:
                return command

    def report(self, kind: str, meter: str, reason: str) -> None:
        """Publish one agent event, as the agent does (QoS 1, acknowledged by the broker)."""
        self._events += 1
        event = {"id": f"ev-{self._events}", "kind": kind, "at": datetime.now(UTC).isoformat(),
                 "meter": meter, "reason": reason}  # fmt: skip
        payload = json.dumps({"v": 1, "events": [event]})
        self.client.publish(topics.topic(self.gateway, "events"), payload, qos=1).wait_for_publish()

    def status(self, state: str) -> None:
        """Publish the gateway's retained status (``online`` / ``offline``)."""
        payload = json.dumps({"v": 1, "state": state, "at": datetime.now(UTC).isoformat()})
        topic = topics.topic(self.gateway, "status")
        self.client.publish(topic, payload, qos=1, retain=True).wait_for_publish()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass
class Stack:
    url: str
    http: httpx.Client
    keys: Keys
    ingest: IngestService
    gw: Gw
    command_key: str


@contextmanager
def running_hub(tmp_path: Path, broker: Broker) -> Iterator[Stack]:
    """The hub (API + ingest) on a fresh SQLite file, the world of ``build_world``, and a
    stand-in gateway ``gw1``; everything stopped on exit."""
    settings = HubSettings(
        db=f"sqlite:///{tmp_path / 'hub.db'}", mqtt=broker.url, sse_poll_s=0.05, scheduler=False
    )
    engine = make_engine(settings.db)
    migrate(engine)
    services = compose(
        settings, engine, ingest=IngestOptions(client_id="hub-test", credit_interval_s=0)
    )
    ingest = services.ingest
    assert ingest is not None
    app = build_app(services)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-mqtt", daemon=True)
    thread.start()
    gw: Gw | None = None
    try:
        wait_for(lambda: server.started, timeout=10)
        assert ingest.wait_connected(10)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as http:
            admin = new_key(engine, "admin")
            build_world(http, admin)
            keys = Keys(admin, new_key(engine, "operator"), new_key(engine, "customer", "c1"),
                        new_key(engine, "customer", "c2"))  # fmt: skip
            with session_scope(engine, write=False) as session:
                row = session.get(Gateway, "gw1")
                assert row is not None
                command_key = row.command_key
            gw = Gw(broker, "gw1")
            yield Stack(url, http, keys, ingest, gw, command_key)
    finally:
        if gw is not None:
            gw.close()
        app.state.hub.stopping.set()
        server.should_exit = True
        thread.join(timeout=15)
        engine.dispose()
