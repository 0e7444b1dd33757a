"""Issue 14, item 2, with the real hub: a gateway's login that asks for the hub's client id
(``smsa-hub``) neither kicks the running hub nor wipes its queued session while it is down.

Mosquitto runs on the files ``smsa-hub mosquitto-config`` writes from the hub's database; the
hub (IngestService) logs in with the user of its URL and keeps its persistent session, the
broker keying it by that user name (``use_username_as_clientid``). The broker's own log
(``log_type all``) counts the hub's connections.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import Engine
from sqlmodel import Session

from demo.broker import mosquitto_path
from hub.db import run_tx
from hub.gateways import mosquitto_hash
from hub.ingest import IngestService
from hub.models import Gateway
from protocol.topics import topic
from tests.hub.ingest.helpers import posted, records_for, usage
from tests.hub.seed import World, seed_world
from tests.support import free_port, mosquitto_config, run_mosquitto, stop, wait_for

HUB_PASSWORD = "hub-secret"


@dataclass
class Site:
    folder: Path
    port: int
    world: World

    @property
    def hub_url(self) -> str:
        return f"mqtt://smsa-hub:{HUB_PASSWORD}@127.0.0.1:{self.port}"

    def hub_connections(self) -> int:
        """CONNECTs the broker accepted as the hub's session (its log, log_type all)."""
        text = (self.folder / "mosquitto.log").read_text()
        return len(re.findall(r"New client connected from \S+ as smsa-hub ", text))


def gateway(site: Site, gateway_id: str, client_id: str) -> mqtt.Client:
    """A connected MQTT 5 client with a gateway's login, clean start, no session expiry."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.username_pw_set(gateway_id, f"pw-{gateway_id}")
    client.connect("127.0.0.1", site.port, clean_start=True)
    client.loop_start()
    wait_for(client.is_connected, timeout=5)
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def site(sqlite_engine: Engine, tmp_path: Path) -> Iterator[Site]:
    if mosquitto_path() is None:
        pytest.skip("mosquitto is needed")
    world = seed_world(sqlite_engine, gateways=2, meters_per_gateway=1)

    def set_passwords(session: Session) -> None:  # what POST /gateways stores
        for gw in world.gateways:
            row = session.get(Gateway, gw)
            assert row is not None
            row.mqtt_password_hash = mosquitto_hash(f"pw-{gw}")
            session.add(row)

    run_tx(sqlite_engine, set_passwords)
    port = free_port()
    db = sqlite_engine.url.render_as_string(hide_password=False)
    conf = mosquitto_config(
        tmp_path / "broker", db, f"mqtt://smsa-hub:{HUB_PASSWORD}@127.0.0.1:{port}"
    )
    proc = run_mosquitto(conf.read_text(), tmp_path, port, log_types=("all",))
    try:
        yield Site(tmp_path, port, world)
    finally:
        stop(proc)


def all_posted(engine: Engine, sent: int, timeout: float = 20.0) -> None:
    with contextlib.suppress(AssertionError):  # the assertion below says how many arrived
        wait_for(lambda: posted(engine) >= sent, timeout=timeout)
    assert posted(engine) == sent, f"{posted(engine)} of {sent} records posted"


def hub(engine: Engine, site: Site) -> IngestService:
    service = IngestService(engine, site.hub_url, "smsa-hub", workers=1, batch_wait_s=0.02)
    service.start()
    assert service.wait_connected(10)
    return service


def test_a_gateway_using_the_hubs_client_id_does_not_kick_the_hub(
    sqlite_engine: Engine, site: Site
) -> None:
    """The issue's run: an intruder reconnecting as "smsa-hub" while another gateway reports."""
    (_meter_a, gw_a), (meter_b, gw_b) = list(site.world.meters.items())[:2]
    service = hub(sqlite_engine, site)
    try:
        sender = gateway(site, gw_b, f"smsa-gw-{gw_b}")
        for record in records_for(meter_b, 20):
            intruder = gateway(site, gw_a, "smsa-hub")
            sender.publish(topic(gw_b, "usage"), usage([record]), qos=1).wait_for_publish(5)
            time.sleep(0.05)
            close(intruder)
        close(sender)
        all_posted(sqlite_engine, 20)
        assert service.connected
    finally:
        service.stop()
    assert site.hub_connections() == 1, f"the hub connected {site.hub_connections()} times"


def test_a_clean_start_as_the_hub_while_it_is_down_keeps_its_queue(
    sqlite_engine: Engine, site: Site
) -> None:
    (_meter_a, gw_a), (meter_b, gw_b) = list(site.world.meters.items())[:2]
    service = hub(sqlite_engine, site)
    service.stop()  # the hub is down; the broker queues for its session
    close(gateway(site, gw_a, "smsa-hub"))  # clean start with the hub's client id
    sender = gateway(site, gw_b, f"smsa-gw-{gw_b}")
    for record in records_for(meter_b, 20):
        sender.publish(topic(gw_b, "usage"), usage([record]), qos=1).wait_for_publish(5)
    close(sender)
    service = hub(sqlite_engine, site)
    try:
        all_posted(sqlite_engine, 20)
    finally:
        service.stop()
