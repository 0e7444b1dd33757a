"""Usage published over MQTT equals the simulated meters' register deltas, exactly.

Real peers: ``smsa-meter-sim`` (TCP, and RTU over a socat pty pair), the agent as a process, a
Mosquitto broker, a paho subscriber reading what the agent published.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient

from firmware_sim.pty import SocatPair, socat_pair
from protocol.messages import UsageRecord
from tests.agent.helpers import (
    Collector,
    Procs,
    agent_config,
    energy_register_wh,
    meter_status,
    meters,
    modbus_rtu,
    modbus_tcp,
    rtu_bus,
    serial_sim_args,
    set_control,
    tcp_bus,
    tcp_sim_args,
    unique_by_seq,
)
from tests.conftest import Broker
from tests.support import free_port, stop, wait_for

UNITS = [1, 2, 3]


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
    tmp_path: Path, mosquitto: Broker, collector: Collector, procs: Procs
) -> None:
    port = free_port()
    procs.sim(tcp_sim_args(port, dict.fromkeys(UNITS, 0), "--speed", "120"))
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters(UNITS))
    status = tmp_path / "status.json"
    agent = procs.agent(config)
    with modbus_tcp(port) as client:
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
    assert chain_total_across_reset(collector.of("m2")) == before + final[2]
    for unit in (1, 3):
        recs = collector.of(f"m{unit}")
        assert min(r.seq for r in recs) == 1 and unique_by_seq(recs)[1].import_start == 0
        assert chain_total(recs) == final[unit]
    resets = collector.events_of("register_reset", "m2")
    assert len(resets) == 1
    assert resets[0].data["old_wh"] == before and resets[0].data["new_wh"] == 0
    for unit in UNITS:  # the hub learns each relay's state from the first reading
        assert collector.events_of("relay", f"m{unit}")[0].data["state"] == "on"
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


def _sim_seconds(client: ModbusSerialClient, unit: int) -> int:
    resp = client.read_holding_registers(0x900F, count=4, device_id=unit)
    assert not resp.isError(), resp
    value = 0
    for word in resp.registers:
        value = (value << 16) | word
    return int(value)


@pytest.mark.slow
@pytest.mark.serial
def test_rtu_pty_three_meters_with_reset(
    tmp_path: Path, mosquitto: Broker, collector: Collector, procs: Procs, pty: SocatPair
) -> None:
    # Simulated time runs 120x from 23:54: no load for 3 s (the agent starts), the profile's
    # load 00:00-00:05 (2.5 s), none 00:05-00:20 (7.5 s: the agent is stopped, meter 2's
    # register reset over the line, the agent started again), load 00:20-00:25, then none.
    # Each phase adds load x 5 minutes to a register, so every final value is known.
    loads = {1: 3000, 2: 1200, 3: 600}
    start = datetime(2026, 1, 1, 23, 54, tzinfo=UTC)
    procs.sim(
        serial_sim_args(
            pty.server,
            loads,
            "--speed",
            "120",
            "--start-time",
            start.isoformat(),
            "--profile",
            "00=1,00:05=0,00:20=1,00:25=0",
        )
    )
    phase = {u: w * 5 // 60 // 10 * 10 for u, w in loads.items()}  # Wh, 1/100 kWh register
    config = agent_config(
        tmp_path, mosquitto.port, rtu_bus(pty.client), meters(list(loads)), poll=0.2
    )
    agent = procs.agent(config)
    wait_for(lambda: all(last_end(collector, f"m{u}") == phase[u] for u in loads), timeout=30)
    stop(agent.proc)
    # the line is free: reset meter 2 ourselves, in the quiet phase
    with modbus_rtu(pty.client) as client:
        assert energy_register_wh(client, 2) == phase[2]
        set_control(client, 2, "reset_value_wh", 0)
        set_control(client, 2, "reset_energy", 1)
        assert energy_register_wh(client, 2) == 0
        at = _sim_seconds(client, 2) - int(start.timestamp())
        assert at < 26 * 60, f"reset at {at} s of simulated time: the host is too slow"
    agent = procs.agent(config)
    expected = {1: 2 * phase[1], 2: phase[2], 3: 2 * phase[3]}
    wait_for(lambda: all(last_end(collector, f"m{u}") == expected[u] for u in loads), timeout=30)
    stop(agent.proc)
    with modbus_rtu(pty.client) as client:
        actual = {u: energy_register_wh(client, u) for u in loads}
    assert actual == expected
    for unit in (1, 3):
        recs = collector.of(f"m{unit}")
        assert unique_by_seq(recs)[1].import_start == 0
        assert chain_total(recs) == expected[unit]
    # meter 2: what it used before the reset, then everything from the reset on
    resets = collector.events_of("register_reset", "m2")
    assert len(resets) == 1 and resets[0].data["old_wh"] == phase[2]
    assert chain_total_across_reset(collector.of("m2")) == phase[2] + expected[2] - int(
        str(resets[0].data["new_wh"])
    )
    assert 0 <= int(str(resets[0].data["new_wh"])) < expected[2]
    status = meter_status(tmp_path / "status.json", "m1")
    assert status["counters"]["requests"] > 0
    assert "Traceback" not in agent.text()
