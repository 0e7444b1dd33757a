"""Simulator fault modes leave the agent running, counting errors, reading the other meters."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_sim.control import FaultMode
from firmware_sim.pty import socat_pair
from tests.agent.helpers import (
    Collector,
    Proc,
    Procs,
    agent_config,
    meter_status,
    meters,
    modbus_rtu,
    modbus_tcp,
    read_status,
    rtu_bus,
    serial_sim_args,
    set_control,
    tcp_bus,
    tcp_sim_args,
)
from tests.conftest import Broker
from tests.support import free_port, stop, wait_for

THREE_METERS = dict.fromkeys((1, 2, 3), 2000)
TWO_METERS = dict.fromkeys((1, 2), 2000)


def _wh(status: Path, meter: str) -> int:
    return int(meter_status(status, meter).get("import_wh") or 0)


def _counter(status: Path, meter: str, name: str) -> int:
    return int(meter_status(status, meter).get("counters", {}).get(name, 0))


def _healthy_meanwhile(status: Path, meters_: tuple[str, ...]) -> None:
    """The given meters keep advancing with no error while another one fails."""
    start = {m: _wh(status, m) for m in meters_}
    wait_for(lambda: all(_wh(status, m) > start[m] for m in meters_), timeout=10)
    for m in meters_:
        st = meter_status(status, m)
        assert st["state"] == "ok" and st["counters"]["errors"] == 0, st


@pytest.mark.slow
def test_tcp_faults_counted_others_keep_reading(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    port = free_port()
    procs.sim(tcp_sim_args(port, THREE_METERS, "--speed", "600"))
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port, timeout_s=0.5), meters([1, 2, 3]))
    status = tmp_path / "status.json"
    agent = procs.agent(config)
    with Collector(mosquitto.port) as collector, modbus_tcp(port) as client:
        wait_for(
            lambda: all(meter_status(status, f"m{u}").get("state") == "ok" for u in (1, 2, 3)),
            timeout=20,
        )
        checks = [
            (FaultMode.NO_RESPONSE, 0, "timeouts"),
            (FaultMode.EXCEPTION, 4, "exceptions"),
            (FaultMode.BAD_CRC, 0, "exceptions"),  # a TCP gateway reports 0x0B for a bad CRC
        ]
        for mode, param, counter in checks:
            before = meter_status(status, "m2")["counters"][counter]
            set_control(client, 2, "fault_param", param)
            set_control(client, 2, "fault_mode", int(mode))
            wait_for(lambda: _counter(status, "m2", counter) >= before + 2, timeout=15)  # noqa: B023
            assert meter_status(status, "m2")["state"] == "failing"
            _healthy_meanwhile(status, ("m1", "m3"))
            set_control(client, 2, "fault_mode", int(FaultMode.NONE))
            wait_for(lambda: meter_status(status, "m2")["state"] == "ok", timeout=15)
        assert agent.proc.poll() is None
        assert read_status(status)["buses"]["bus0"]["alive"]  # type: ignore[index]
        wait_for(lambda: len(collector.of("m1")) >= 3 and len(collector.of("m3")) >= 3)
    log = agent.text()
    assert "Traceback" not in log
    # logged once at ERROR per failing episode, then DEBUG until it answers again
    assert log.count("ERROR agent.modbus.poller") == len(checks)
    assert log.count("answers again") == len(checks)


@pytest.mark.slow
@pytest.mark.serial
def test_rtu_crc_errors_counted_others_keep_reading(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    with socat_pair() as pty:
        procs.sim(serial_sim_args(pty.server, THREE_METERS, "--speed", "600"))
        # the agent is the only master once it runs: set the fault first
        with modbus_rtu(pty.client) as client:
            set_control(client, 2, "fault_mode", int(FaultMode.BAD_CRC))
        config = agent_config(
            tmp_path, mosquitto.port, rtu_bus(pty.client, timeout_s=0.5), meters([1, 2, 3])
        )
        status = tmp_path / "status.json"
        agent = procs.agent(config)
        wait_for(
            lambda: meter_status(status, "m2").get("counters", {}).get("errors", 0) >= 3, timeout=20
        )
        assert meter_status(status, "m2")["state"] == "failing"
        _healthy_meanwhile(status, ("m1", "m3"))
        assert agent.proc.poll() is None
        stop(agent.proc)
        assert "Traceback" not in agent.text()


@pytest.mark.slow
def test_tcp_reconnects_after_the_peer_goes_away(
    tmp_path: Path, mosquitto: Broker, procs: Procs, collector: Collector
) -> None:
    port = free_port()
    args = tcp_sim_args(port, TWO_METERS)
    sim = procs.sim(args)
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters([1, 2]))
    status = tmp_path / "status.json"
    agent = procs.agent(config)
    both = ("m1", "m2")
    wait_for(lambda: meter_status(status, "m2").get("state") == "ok", timeout=20)
    stop(sim.proc)
    wait_for(lambda: all(meter_status(status, m).get("state") == "failing" for m in both), 15)
    assert _counter(status, "m1", "connection") >= 1
    wait_for(lambda: collector.events_of("meter_offline", "m1"), timeout=15)
    procs.sim(args, "sim2.log")
    wait_for(lambda: all(meter_status(status, m).get("state") == "ok" for m in both), 15)
    assert (read_status(status) or {})["buses"]["bus0"]["reconnects"] >= 1
    wait_for(lambda: collector.events_of("meter_online", "m1"), timeout=10)
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.text()


def _socat_links(folder: Path) -> subprocess.Popen[bytes]:
    """A pty pair behind stable names (``server``, ``client``), like a USB adapter's path."""
    proc = subprocess.Popen(
        [
            shutil.which("socat") or "socat",
            f"pty,raw,echo=0,link={folder / 'server'}",
            f"pty,raw,echo=0,link={folder / 'client'}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: (folder / "server").exists() and (folder / "client").exists(), timeout=10)
    return proc


@pytest.mark.slow
@pytest.mark.serial
def test_rtu_port_lost_and_back(tmp_path: Path, mosquitto: Broker, procs: Procs) -> None:
    """The serial port disappears (adapter unplugged) and comes back: the agent reopens it."""
    line = _socat_links(tmp_path)
    procs.append(Proc(line, tmp_path / "socat.log"))
    args = serial_sim_args(str(tmp_path / "server"), TWO_METERS)
    procs.sim(args)
    config = agent_config(
        tmp_path, mosquitto.port, rtu_bus(str(tmp_path / "client"), timeout_s=0.5), meters([1, 2])
    )
    status = tmp_path / "status.json"
    agent = procs.agent(config)
    both = ("m1", "m2")
    wait_for(lambda: all(meter_status(status, m).get("state") == "ok" for m in both), 20)
    stop(line)  # unplugged: both ptys vanish
    wait_for(lambda: all(meter_status(status, m).get("state") == "failing" for m in both), 15)
    line = _socat_links(tmp_path)  # plugged back in, same path
    procs.append(Proc(line, tmp_path / "socat2.log"))
    procs.sim(args, "sim2.log")
    wait_for(lambda: all(meter_status(status, m).get("state") == "ok" for m in both), 20)
    assert (read_status(status) or {})["buses"]["bus0"]["reconnects"] >= 1
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.text()
