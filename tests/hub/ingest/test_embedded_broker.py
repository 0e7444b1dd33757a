"""Ingest through the embedded broker (amqtt, MQTT 3.1.1 only): the hub falls back from MQTT 5
and posts every record once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from demo.broker import EmbeddedBroker
from hub.ingest import IngestService
from tests.hub.ingest.helpers import posted, publisher, records_for
from tests.hub.seed import World
from tests.support import wait_for


@pytest.fixture
def embedded() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_ingest_falls_back_to_mqtt_311_and_posts(
    sqlite_engine: Engine, world: World, embedded: EmbeddedBroker
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    service = IngestService(sqlite_engine, embedded.url, client_id="hub-embedded")
    service.start()
    try:
        assert service.wait_connected(15)
        assert not service.mqtt_v5
        with publisher(embedded.port) as pub:
            pub.usage(gateway, records_for(meter, 10))
        wait_for(lambda: posted(sqlite_engine) == 10, timeout=15)
        # the counters are updated just after the batch's commit
        wait_for(lambda: service.counters["posted"] == 10, timeout=5)
    finally:
        service.stop()
