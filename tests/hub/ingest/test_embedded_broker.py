"""Ingest through the embedded broker (amqtt, MQTT 3.1.1 only): the hub falls back from MQTT 5
and posts every record once; the broker stops even when one of its tasks will not end."""

from __future__ import annotations

import asyncio
import logging
import time
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


async def _stubborn() -> None:
    """A task that will not end when cancelled."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


def test_a_task_that_will_not_end_does_not_hold_up_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = EmbeddedBroker()
    broker.start()
    asyncio.run_coroutine_threadsafe(_stubborn(), broker._loop)  # a fault put into its loop
    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="demo.broker"):
        broker.stop(timeout=1.0)
    assert time.monotonic() - began < 5
    assert not broker._thread.is_alive()
    assert "did not shut down within 1 s" in caplog.text and "_stubborn" in caplog.text
