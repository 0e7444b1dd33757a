"""Signed commands: built, verified with the gateway key, refused when tampered; the service
queues a credit state on demand (top-up), for every meter of a tariff, and any command, and
publishes them from the command table."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from hub.commands.store import enqueue, history
from hub.control.commands import build_command, credit_command, topic_for
from hub.control.credit_state import credit_rules, queue_credit_states, queue_tariff_update
from hub.db import read_tx, write_tx
from hub.ingest import IngestService
from hub.rating.payers import paying_account
from protocol.messages import Command, CreditState, validate
from protocol.signing import new_key, verify
from protocol.tariff import Tariff
from tests.conftest import Broker
from tests.hub.ingest.helpers import Collector
from tests.hub.seed import World
from tests.support import wait_for

KEY = new_key()
TARIFF = Tariff.model_validate({"id": "t", "components": [{"provider": "p", "per_kwh": "0.1"}]})


def test_a_command_is_signed_and_expires() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    cmd = build_command(KEY, "m1", "disconnect", reason="credit exhausted", now=now,
                        ttl=timedelta(minutes=5))  # fmt: skip
    assert verify(cmd, KEY)
    parsed = validate(cmd, Command)
    assert parsed.expires_at - parsed.issued_at == timedelta(minutes=5)
    assert not verify({**cmd, "action": "reconnect"}, KEY), "a tampered command fails"
    assert build_command(KEY, "m1", "prompt")["id"] != build_command(KEY, "m1", "prompt")["id"]
    with pytest.raises(ValueError, match="unknown action"):
        build_command(KEY, "m1", "explode")
    assert topic_for("gw-1") == "smsa/v1/gw/gw-1/cmd"


def test_a_credit_command_carries_the_credit_state() -> None:
    state = CreditState(balance=-120, as_of_seq=9, tariff=TARIFF, carry={"p": "1/3"})
    cmd = credit_command(KEY, "m1", state)
    assert verify(json.loads(json.dumps(cmd)), KEY), "survives the JSON round trip"
    assert validate(cmd["params"], CreditState) == state


def test_rules_come_from_the_customer_with_defaults() -> None:
    flags = {"credit_rules": {"low_credit": [500, 100], "emergency_credit": 300}}
    rules = credit_rules(flags, protected=True)
    assert rules.low_credit == (500, 100) and rules.emergency_credit == 300 and rules.protected
    assert credit_rules({"credit_rules": {"low_credit": "lots"}}, False).low_credit == ()
    assert credit_rules(None, False).protected is False
    assert paying_account("c1", {"c1": 1, "s": 5}) == "c1"
    assert paying_account("c1", {"c1": 0, "s": 5, "t": 5}) == "s"


def test_service_publishes_credit_states_and_commands_on_demand(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    pairs = list(world.meters.items())
    (meter, gateway), (other, other_gw) = pairs[0], pairs[-1]
    inbox = Collector(mosquitto.port, "smsa/v1/gw/+/cmd")
    try:
        assert inbox.subscribed.wait(5)
        service = start_service(sqlite_engine)
        assert set(queue_credit_states(sqlite_engine, [meter, other, "nobody"])) == {meter, other}
        assert queue_tariff_update(sqlite_engine, world.tariff.id) == len(world.meters)
        command = build_command(world.gateways[gateway], meter, "disconnect", reason="operator")
        with write_tx(sqlite_engine) as conn:
            command_id = enqueue(conn, gateway, command)
        service.wake_commands()

        # each meter's newest credit state supersedes the older ones still queued; whatever is
        # left open is published, and the broker's PUBACK makes it ``sent``
        def statuses() -> dict[str, str]:
            with read_tx(sqlite_engine) as conn:
                return {r["id"]: str(r["status"]) for m in world.meters
                        for r in history(conn, m)}  # fmt: skip

        wait_for(lambda: "queued" not in statuses().values(), timeout=20)
        final = statuses()
        assert final[command_id] == "sent"
        open_ids = {i for i, s in final.items() if s == "sent"}
        assert len(open_ids) == 1 + len(world.meters)  # the disconnect and a credit per meter
        wait_for(lambda: open_ids <= {json.loads(p)["id"] for _, p in inbox.messages})
        by_topic: dict[str, list[dict[str, object]]] = {}
        for name, payload in inbox.messages:
            by_topic.setdefault(name, []).append(json.loads(payload))
        for name, commands in by_topic.items():
            gw = name.split("/")[3]
            assert all(verify(c, world.gateways[gw]) for c in commands)
        assert any(c["id"] == command_id for c in by_topic[topic_for(gateway)])
        assert any(c["meter"] == other for c in by_topic[topic_for(other_gw)])
    finally:
        inbox.close()
