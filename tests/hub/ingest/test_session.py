"""The hub's persistent session: records published while the hub is stopped are delivered when
it starts again, with MQTT 5 (session expiry) and MQTT 3.1.1 (clean session off); manual
acknowledgement works with both, and a clean stop leaves nothing posted unacknowledged."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from hub.ingest import IngestService
from tests.conftest import Broker
from tests.hub.ingest.helpers import posted, publisher, records_for
from tests.hub.seed import World
from tests.support import wait_for


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_records_sent_while_the_hub_is_down_arrive_after_restart(
    sqlite_engine: Engine, world: World, mosquitto: Broker, v5: bool
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    records = records_for(meter, 90)
    client_id = f"hub-session-{v5}"
    service = IngestService(sqlite_engine, mosquitto.url, client_id, batch_size=50, mqtt_v5=v5)
    service.start()
    try:
        assert service.wait_connected(10)
        with publisher(mosquitto.port) as pub:
            for r in records[:30]:  # one message each: more than MQTT 3.1.1's 20 in flight
                pub.usage(gateway, [r])
            wait_for(lambda: posted(sqlite_engine) == 30)
            service.stop()
            for r in records[30:]:
                pub.usage(gateway, [r])
        service = IngestService(sqlite_engine, mosquitto.url, client_id, batch_size=50,
                                mqtt_v5=v5)  # fmt: skip
        service.start()
        wait_for(lambda: posted(sqlite_engine) == 90, timeout=20)
        wait_for(lambda: service.counters["posted"] == 60)
        assert service.counters["duplicates"] == 0  # a clean stop acknowledged what it posted
    finally:
        service.stop()


def test_a_clean_stop_mid_stream_acknowledges_everything_it_posted(
    sqlite_engine: Engine, world: World, mosquitto: Broker
) -> None:
    """Stopped while batches are in hand, the hub acknowledges each batch it posted before it
    disconnects: after a restart nothing comes back as a duplicate."""
    meters = list(world.meters.items())[:4]
    streams = {meter: records_for(meter, 300) for meter, _gateway in meters}
    service = IngestService(sqlite_engine, mosquitto.url, "hub-clean-stop", batch_size=200)
    service.start()
    try:
        assert service.wait_connected(10)
        with publisher(mosquitto.port) as pub:
            for i in range(300):
                for meter, gateway in meters:
                    pub.usage(gateway, [streams[meter][i]])
                if i == 150:
                    wait_for(lambda: posted(sqlite_engine) > 0)
                    service.stop()  # while records stream in
        first = posted(sqlite_engine)
        assert 0 < first < 1200
        service = IngestService(sqlite_engine, mosquitto.url, "hub-clean-stop", batch_size=200)
        service.start()
        wait_for(lambda: posted(sqlite_engine) == 1200, timeout=30)
        wait_for(lambda: service.counters["posted"] == 1200 - first)
        assert service.counters["duplicates"] == 0
    finally:
        service.stop()


def test_the_receive_window_holds_two_batches_per_settler(sqlite_engine: Engine) -> None:
    """The broker may have two batches per settler out unacknowledged (each settler has its
    next batch in hand while it commits one), within MQTT 5's limit of 65,535."""
    url = "mqtt://127.0.0.1:1883"  # nothing connects: the service is never started
    assert IngestService(sqlite_engine, url).receive_maximum == 2 * 2 * 10_000
    assert IngestService(sqlite_engine, url, workers=3, batch_size=100).receive_maximum == 600
    assert IngestService(sqlite_engine, url, batch_size=50_000).receive_maximum == 65_535
    assert IngestService(sqlite_engine, url, queue_max=77).receive_maximum == 77
