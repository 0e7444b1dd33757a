"""Credit-control fixtures: a migrated SQLite file, an injected clock, and commands published
through a real Mosquitto broker to a subscriber standing in for the gateways."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from hub.commands.dispatcher import CommandDispatcher
from hub.control.engine import CreditControl
from tests.conftest import Broker
from tests.hub.api.conftest import (  # noqa: F401 (the API's fixtures, for test_api_rules)
    api_engine,
    api_settings,
    app,
    client,
    keys,
    live_server,
    migrated_sqlite,
)
from tests.hub.control.scene import Clock, Scene, make_scene
from tests.hub.ingest.helpers import Collector, Publisher


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wire(mosquitto: Broker) -> Iterator[tuple[Publisher, Collector]]:
    """The hub's publisher (QoS 1, waits for PUBACK) and a subscriber to every cmd topic."""
    collector = Collector(mosquitto.port, "smsa/v1/gw/+/cmd")
    assert collector.subscribed.wait(10)
    publisher = Publisher(mosquitto.port, "hub-control-test")
    try:
        yield publisher, collector
    finally:
        publisher.close()
        collector.close()


@pytest.fixture
def scene_of(
    engine: Engine, clock: Clock, wire: tuple[Publisher, Collector]
) -> Callable[..., Scene]:
    """``scene_of(**options)``: a customer with one meter on SQLite and on PostgreSQL; credit
    control publishes through the broker and ``scene.commands()`` reads what the gateway
    would receive."""
    publisher, collector = wire

    def publish(topic: str, payload: bytes, command_id: str) -> bool:
        publisher.send(topic, payload)  # waits for the PUBACK
        dispatcher.on_puback(command_id)
        return True

    # the command table's dispatcher, run at once whenever credit control queued commands
    dispatcher = CommandDispatcher(engine, publish)
    control = CreditControl(engine, wake=dispatcher.step, clock=clock)

    def make(**options: Any) -> Scene:
        scene = make_scene(engine, control, **options)
        scene.sent = collector.messages
        return scene

    return make
