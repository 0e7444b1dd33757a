"""Usage over a real broker into a real SQLite ledger: posted once, rated by the hub, and the
meter told its credit state in a signed command."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from fractions import Fraction
from math import floor

from sqlalchemy import Engine, select

from hub.db import read_tx
from hub.ingest import IngestService
from hub.ledger import check_invariants, provider_account_id
from protocol.messages import Command, CreditState, validate
from protocol.rating import price_interval
from protocol.signing import verify
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import (
    Collector,
    balances,
    entries,
    posted,
    publisher,
    records_for,
    table,
)
from tests.hub.seed import World
from tests.support import wait_for


def test_usage_is_posted_rated_and_credit_state_sent(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    customer = world.customers[meter]
    before = balances(sqlite_engine)
    commands = Collector(mosquitto.port, topic(gateway, "cmd"))
    try:
        assert commands.subscribed.wait(5)
        service = start_service(sqlite_engine, credit_interval_s=0)
        records = records_for(meter, 20)
        with publisher(mosquitto.port) as pub:
            pub.usage(gateway, records[:10])
            pub.usage(gateway, records[10:])
        wait_for(lambda: posted(sqlite_engine) == 20)
        wait_for(lambda: commands.messages)
        # the hub's own rating: exact total within one minor unit of the tariff on the energy
        exact = Fraction(0)
        for r in records:
            amounts = price_interval(world.tariff, datetime.fromisoformat(r["start"]),
                                     datetime.fromisoformat(r["end"]),
                                     r["import_end"] - r["import_start"])  # fmt: skip
            exact += sum(amounts.values())
        after = balances(sqlite_engine)
        paid = before[customer] - after[customer]
        assert paid == floor(exact)
        earned = sum(after[provider_account_id(p)] - before[provider_account_id(p)]
                     for p in world.tariff.providers)  # fmt: skip
        assert earned == paid
        assert service.counters["posted"] == 20
        assert service.counters["records"] == 20
        with read_tx(sqlite_engine) as conn:
            assert check_invariants(conn)["ok"]
            row = conn.execute(select(table("meters")).where(table("meters").c.id == meter)).one()
        assert row.last_seq == 20 and row.online
        assert row.import_wh == records[-1]["import_end"]
        # the credit command: signed with the gateway's key, carrying the credit state
        wait_for(lambda: (state := _last_state(commands)) is not None and state.as_of_seq == 20)
        _, payload = commands.messages[-1]
        command = json.loads(payload)
        assert verify(command, world.gateways[gateway])
        assert not verify(command, "11" * 32)
        cmd = validate(command, Command)
        assert cmd.action == "credit" and cmd.meter == meter
        state = validate(cmd.params, CreditState)
        assert state.balance == after[customer]
        assert state.tariff.id == world.tariff.id
        assert cmd.expires_at > cmd.issued_at
    finally:
        commands.close()


def _last_state(collector: Collector) -> CreditState | None:
    if not collector.messages:
        return None
    command = json.loads(collector.messages[-1][1])
    return validate(command["params"], CreditState)


def test_replay_changes_nothing(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meter, gateway = next(iter(world.meters.items()))
    service = start_service(sqlite_engine)
    records = records_for(meter, 15)
    with publisher(mosquitto.port) as pub:
        pub.usage(gateway, records)
        wait_for(lambda: posted(sqlite_engine) == 15)
        snapshot = balances(sqlite_engine), entries(sqlite_engine)
        pub.usage(gateway, records)
        pub.usage(gateway, records[3:7])
        wait_for(lambda: service.counters["duplicates"] == 19)
    assert (balances(sqlite_engine), entries(sqlite_engine)) == snapshot
