"""Usage settled over a real broker is audited (issue 20, item 4): one ``usage_settled`` event
per gateway per batch, caused by the gateway, whose records and debit add up to what the ledger
posted and the customer paid."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine
from sqlmodel import col, select

from hub.db import session_scope
from hub.ingest import IngestService
from hub.models import Event
from tests.conftest import Broker
from tests.hub.ingest.helpers import balances, posted, publisher, records_for
from tests.hub.seed import World
from tests.support import wait_for


def test_settled_usage_names_its_gateway(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    customer = world.customers[meter]
    before = balances(sqlite_engine)
    start_service(sqlite_engine, credit_interval_s=0)
    records = records_for(meter, 12)
    with publisher(mosquitto.port) as pub:
        pub.usage(gateway, records[:5])
        pub.usage(gateway, records[5:])
    wait_for(lambda: posted(sqlite_engine) == 12)
    paid = before[customer] - balances(sqlite_engine)[customer]
    with session_scope(sqlite_engine, write=False) as session:
        rows = session.exec(
            select(Event.actor, Event.data)
            .where(Event.kind == "usage_settled")
            .order_by(col(Event.id))
        ).all()
    assert rows and {actor for actor, _ in rows} == {f"gateway:{gateway}"}
    data = [d or {} for _, d in rows]
    assert sum(d["records"] for d in data) == 12
    assert sum(d["debit"] for d in data) == paid > 0
    assert all(d["first_entry"] <= d["last_entry"] for d in data)
