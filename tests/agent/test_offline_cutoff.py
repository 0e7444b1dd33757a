"""Broker down for the whole run: the agent still cuts supply when credit runs out; when the
broker comes back every record arrives once, in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.credit import CreditBook
from protocol.messages import CreditState
from protocol.tariff import Tariff
from tests.agent.helpers import (
    Collector,
    Procs,
    agent_config,
    meter_status,
    meters,
    modbus_tcp,
    read_status,
    relay_register,
    tcp_bus,
    tcp_sim_args,
)
from tests.conftest import Broker
from tests.support import free_port, wait_for


@pytest.mark.slow
def test_cuts_off_offline_then_delivers_everything(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    port = free_port()
    # 3 kW at 600x: 0.5 kWh per real second, at 1.00 USD/kWh: 50 cents a second
    procs.sim(tcp_sim_args(port, {1: 3000, 2: 100}, "--speed", "600"))
    db = tmp_path / "agent.db"
    tariff = Tariff.model_validate(
        {"id": "flat", "currency": "USD", "components": [{"provider": "retail", "per_kwh": "1.00"}]}
    )
    book = CreditBook(db)
    try:
        book.apply("m1", CreditState(balance=150, as_of_seq=0, tariff=tariff))
    finally:
        book.close()
    with Collector(mosquitto.port, persistent=True) as collector, modbus_tcp(port) as client:
        mosquitto.stop()
        config = agent_config(
            tmp_path, mosquitto.port, tcp_bus(port), meters([1, 2]), db=db, report=0.5
        )
        status = tmp_path / "status.json"
        agent = procs.agent(config)
        wait_for(lambda: relay_register(client, 1) == 0, timeout=30)
        assert relay_register(client, 2) == 1  # no credit state for m2: never cut
        wait_for(lambda: meter_status(status, "m1").get("relay") == "off")
        assert (meter_status(status, "m1").get("seq") or 0) >= 1
        assert (read_status(status) or {})["uplink"]["connected"] is False
        seq_at_cut = meter_status(status, "m1")["seq"]
        mosquitto.restart()
        wait_for(
            lambda: (
                len(collector.of("m1")) >= seq_at_cut and collector.events_of("disconnect", "m1")
            ),
            timeout=60,
        )
    records = collector.of("m1")
    seqs = [r.seq for r in records]
    assert seqs == list(range(1, len(seqs) + 1))  # once each, in order
    assert sum(sum(r.shares.values()) for r in records) > 150  # priced locally
    cut = collector.events_of("disconnect", "m1")
    assert len(cut) == 1 and cut[0].data["rule"] == "exhausted"
    assert "Traceback" not in agent.text()
