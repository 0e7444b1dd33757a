"""Usage published over MQTT equals the simulated meters' register deltas, exactly.

Real peers: ``smsa-meter-sim`` (TCP, and RTU over a socat pty pair), the agent as a process, a
Mosquitto broker, a paho subscriber reading what the agent published.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.framer import FramerType

from firmware_sim.pty import SocatPair, socat_pair
from protocol.messages import UsageRecord
from tests.agent.helpers import (
    Collector,
    Proc,
    agent_config,
    energy_register_wh,
    meter_status,
    meters,
    rtu_bus,
    set_control,
    start_agent,
    start_sim,
    tcp_bus,
    unique_by_seq,
)
from tests.conftest import Broker
from tests.support import free_port, stop, wait_for

UNITS = [1, 2, 3]


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        stop(p.proc)


@pytest.fixture
def collector(mosquitto: Broker) -> Iterator[Collector]:
    c = Collector(mosquitto.port)
    yield c
    c.close()


def chain_total(records: list[UsageRecord]) -> int:
    """Energy of a meter's records, checking seqs 1..n with no gap and no conflicting repeat."""
    by_seq = unique_by_seq(records)
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1)), sorted(by_seq)
    ordered = [by_seq[s] for s in sorted(by_seq)]
    for a, b in itertools.pairwise(ordered):
        assert b.start == a.end
    return sum(r.energy for r in ordered)


def last_end(c: Collector, meter: str) -> int | None:
    recs = c.of(meter)
    return max(recs, key=lambda r: r.seq).import_end if recs else None


@pytest.mark.slow
def test_tcp_three_meters_with_reset(
    tmp_path: Path, mosquitto: Broker, collector: Collector, procs: list[Proc]
) -> None:
    port = free_port()
    args = ["--tcp", f"127.0.0.1:{port}", "--speed", "120"]
    procs.append(
        start_sim([*args, *(a for u in UNITS for a in ("--meter", f"{u}:0"))], tmp_path / "sim.log")
    )
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters(UNITS))
    status = tmp_path / "status.json"
    agent = start_agent(config, tmp_path / "agent.log")
    procs.append(agent)
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()
    try:
        wait_for(
            lambda: all(meter_status(status, f"m{u}").get("import_wh") == 0 for u in UNITS),
            timeout=20,
        )
        for unit, watts in zip(UNITS, (3000, 1000, 2000), strict=True):
            set_control(client, unit, "load_w", watts)
        wait_for(lambda: len(collector.of("m2")) >= 2, timeout=20)
        # freeze m2, let the agent read the frozen value, then reset its register to 0
        set_control(client, 2, "load_w", 0)
        before = energy_register_wh(client, 2)
        assert before > 0
        wait_for(lambda: meter_status(status, "m2").get("import_wh") == before, timeout=10)
        set_control(client, 2, "reset_value_wh", 0)
        set_control(client, 2, "reset_energy", 1)
        assert energy_register_wh(client, 2) == 0
        wait_for(lambda: meter_status(status, "m2").get("import_wh") == 0, timeout=10)
        set_control(client, 2, "load_w", 1500)
        wait_for(lambda: collector.events_of("register_reset", "m2"), timeout=10)
        reset_at = datetime.fromisoformat(
            str(collector.events_of("register_reset", "m2")[0].data["new_at"])
        )
        # usage after the reset is published: an interval from the reset reading onwards
        wait_for(
            lambda: any(r.start >= reset_at and r.import_end > 0 for r in collector.of("m2")),
            timeout=20,
        )
        for unit in UNITS:
            set_control(client, unit, "load_w", 0)
        final = {u: energy_register_wh(client, u) for u in UNITS}
        wait_for(lambda: all(last_end(collector, f"m{u}") == final[u] for u in UNITS), timeout=20)
    finally:
        client.close()
    assert chain_total_across_reset(collector.of("m2")) == before + final[2]
    for unit in (1, 3):
        recs = collector.of(f"m{unit}")
        assert min(r.seq for r in recs) == 1 and unique_by_seq(recs)[1].import_start == 0
        assert chain_total(recs) == final[unit]
    resets = collector.events_of("register_reset", "m2")
    assert len(resets) == 1
    assert resets[0].data["old_wh"] == before and resets[0].data["new_wh"] == 0
    assert "Traceback" not in agent.text()


def chain_total_across_reset(records: list[UsageRecord]) -> int:
    by_seq = unique_by_seq(records)
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    ordered = [by_seq[s] for s in sorted(by_seq)]
    breaks = 0
    for a, b in itertools.pairwise(ordered):
        assert b.start >= a.end
        if b.import_start != a.import_end:
            assert b.import_start < a.import_end  # only across the reset
            breaks += 1
    assert breaks == 1
    return sum(r.energy for r in ordered)


@pytest.fixture
def pty() -> Iterator[SocatPair]:
    with socat_pair() as pair:
        yield pair


@pytest.mark.slow
@pytest.mark.serial
def test_rtu_pty_three_meters(
    tmp_path: Path, mosquitto: Broker, collector: Collector, procs: list[Proc], pty: SocatPair
) -> None:
    # Simulated time starts at 23:55 and runs 60x: 5 s without load (the agent starts), then
    # the profile's load from 00:00 to 00:05 (5 s), then none: each meter's final register is
    # load x 5 minutes, known in advance.
    loads = {1: 3000, 2: 1200, 3: 600}
    sim = start_sim(
        [
            "--serial",
            pty.server,
            "--speed",
            "60",
            "--start-time",
            "2026-01-01T23:55:00+00:00",
            "--profile",
            "00=1,00:05=0",
            *(a for u, w in loads.items() for a in ("--meter", f"{u}:{w}")),
        ],
        tmp_path / "sim.log",
    )
    procs.append(sim)
    expected = {u: w * 5 // 60 // 10 * 10 for u, w in loads.items()}  # Wh, 1/100 kWh register
    config = agent_config(
        tmp_path, mosquitto.port, rtu_bus(pty.client), meters(list(loads)), poll=0.2
    )
    agent = start_agent(config, tmp_path / "agent.log")
    procs.append(agent)
    wait_for(lambda: all(last_end(collector, f"m{u}") == expected[u] for u in loads), timeout=40)
    stop(agent.proc)
    # the line is free again: read the registers ourselves
    client = ModbusSerialClient(pty.client, framer=FramerType.RTU, baudrate=9600, timeout=1)
    assert client.connect()
    try:
        actual = {u: energy_register_wh(client, u) for u in loads}
    finally:
        client.close()
    assert actual == expected
    for unit in loads:
        recs = collector.of(f"m{unit}")
        assert unique_by_seq(recs)[1].import_start == 0
        assert chain_total(recs) == expected[unit]
    status = meter_status(tmp_path / "status.json", "m1")
    assert status["counters"]["requests"] > 0
    assert "Traceback" not in agent.text()
