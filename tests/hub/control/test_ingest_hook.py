"""Credit control driven by the real ingest path: usage over Mosquitto into the ledger, the
hook after each committed batch, signed commands back on the gateway's cmd topic."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session

from hub import ledger
from hub.control.rules import split_rules
from hub.db import run_tx
from hub.ingest import IngestService
from hub.ledger.sql import customers
from protocol.signing import verify
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.control.scene import Clock, Scene
from tests.hub.ingest.helpers import Collector, posted, publisher, records_for
from tests.hub.seed import seed_world
from tests.support import wait_for


def _posted(engine: Engine, n: int) -> bool:
    return posted(engine) == n


def _commands(collector: Collector, key: str, action: str) -> list[dict[str, Any]]:
    out = []
    for _topic, payload in list(collector.messages):
        command = json.loads(payload)
        assert verify(command, key)
        if command["action"] == action:
            out.append(command)
    return out


def test_usage_batches_run_credit_control(sqlite_engine: Engine, mosquitto: Broker) -> None:
    world = seed_world(sqlite_engine, gateways=1, meters_per_gateway=1, topup=300)
    meter, gateway = next(iter(world.meters.items()))
    customer, key = world.customers[meter], world.gateways[gateway]
    proto, policy = split_rules({"low_credit": [200], "reconnect_above": 100})

    def rules(session: Session) -> None:
        flags = {"credit_rules": proto, "credit_policy": policy}
        session.connection().execute(
            update(customers).where(customers.c.id == customer).values(flags=flags)
        )

    run_tx(sqlite_engine, rules)
    collector = Collector(mosquitto.port, topic(gateway, "cmd"))
    service = IngestService(sqlite_engine, mosquitto.url, client_id="hub-hook", batch_wait_s=0.02)
    assert service.control is not None
    service.control.clock = Clock()
    try:
        assert collector.subscribed.wait(10)
        service.start()
        assert service.wait_connected(10)
        records = records_for(meter, 60)  # 15-minute intervals of up to 0.7 kWh: about 4.90
        with publisher(mosquitto.port) as pub:
            for i in range(0, 60, 5):  # about 0.40 a message: one batch each
                pub.usage(gateway, records[i : i + 5])
                wait_for(partial(_posted, sqlite_engine, i + 5))
        wait_for(lambda: _commands(collector, key, "disconnect"))
        scene = Scene(sqlite_engine, service.control, meter, customer, gateway, key)
        assert scene.balance() < 0
        kinds = scene.kinds()
        assert kinds.count("disconnect") == 1 and kinds.index("low_credit") < kinds.index(
            "disconnect"
        )
        assert len(_commands(collector, key, "prompt")) == 1

        def topup(session: Session) -> ledger.TopupResult:
            return ledger.post_topup(session, customer, 5000, idempotency_key="back")

        result = run_tx(sqlite_engine, topup)
        service.control.after_topup(customer, result.entry_id)
        wait_for(lambda: _commands(collector, key, "reconnect"))
        assert scene.invariants() == {}
    finally:
        service.stop()
        collector.close()
