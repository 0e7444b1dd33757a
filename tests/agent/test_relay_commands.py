"""Hub commands switch the relay only when valid; tamper is detected and reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.control import FaultMode
from protocol.signing import new_key
from tests.agent.helpers import (
    Collector,
    Procs,
    agent_config,
    command,
    meter_status,
    meters,
    modbus_tcp,
    publish,
    relay_register,
    set_control,
    tcp_bus,
    tcp_sim_args,
)
from tests.conftest import Broker
from tests.support import free_port, wait_for

CMD = "smsa/v1/gw/gw-t/cmd"


def _rejected(c: Collector, words: str) -> bool:
    return any(words in e.reason for e in c.events_of("command_rejected"))


@pytest.mark.slow
def test_commands_and_tamper(tmp_path: Path, mosquitto: Broker, procs: Procs) -> None:
    port = free_port()
    procs.sim(tcp_sim_args(port, dict.fromkeys((1, 2), 2000), "--speed", "600"))
    key = new_key()
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters([1, 2]), key=key)
    status = tmp_path / "status.json"
    with Collector(mosquitto.port) as collector, modbus_tcp(port) as client:
        agent = procs.agent(config)
        wait_for(lambda: meter_status(status, "m1").get("relay") == "on", timeout=20)
        wait_for(lambda: meter_status(status, "m1").get("import_wh", 0) > 0)

        # bad signature, expired, unknown meter: refused, reported, no relay action
        publish(mosquitto.port, CMD, command(new_key(), "m1", "disconnect"))
        publish(mosquitto.port, CMD, command(key, "m1", "disconnect", expires_in_s=-5))
        publish(mosquitto.port, CMD, command(key, "m9", "disconnect"))
        publish(mosquitto.port, CMD, b"{not json")
        wait_for(lambda: len(collector.events_of("command_rejected")) >= 4, timeout=15)
        assert _rejected(collector, "bad signature")
        assert _rejected(collector, "expired")
        assert _rejected(collector, "not on this gateway")
        assert relay_register(client, 1) == 1
        assert not collector.events_of("disconnect")

        # a valid disconnect: relay off, read back, acknowledged
        valid = command(key, "m1", "disconnect")
        publish(mosquitto.port, CMD, valid)
        wait_for(lambda: collector.events_of("command_ack", "m1"), timeout=15)
        ack = collector.events_of("command_ack", "m1")[0]
        assert ack.data["action"] == "disconnect" and ack.data["ok"] is True
        assert collector.events_of("disconnect", "m1")
        assert relay_register(client, 1) == 0
        wait_for(lambda: meter_status(status, "m1").get("relay") == "off")

        # the same command again (a redelivery, the hub sending it again, a replay): not
        # applied again, acknowledged again so the hub stops sending it
        publish(mosquitto.port, CMD, valid)
        wait_for(lambda: len(collector.events_of("command_ack", "m1")) == 2, timeout=15)
        again = collector.events_of("command_ack", "m1")[1]
        assert again.reason == "already applied" and again.data["command"] == ack.data["command"]
        assert len(collector.events_of("disconnect", "m1")) == 1

        # the sim's tamper bypass: energy flows while the relay reads off
        assert not collector.events_of("tamper")
        set_control(client, 1, "tamper", 1)
        wait_for(
            lambda: any(
                e.data.get("rule") == "energy_while_off"
                for e in collector.events_of("tamper", "m1")
            ),
            timeout=15,
        )
        set_control(client, 1, "tamper", 0)

        # someone closes the relay behind the agent's back: tamper, and switched off again
        set_control(client, 1, "relay", 1)
        wait_for(
            lambda: any(
                e.data.get("rule") == "relay_mismatch" for e in collector.events_of("tamper", "m1")
            ),
            timeout=15,
        )
        wait_for(lambda: relay_register(client, 1) == 0, timeout=10)

        # reconnect
        publish(mosquitto.port, CMD, command(key, "m1", "reconnect"))
        wait_for(lambda: collector.events_of("reconnect", "m1"), timeout=15)
        assert relay_register(client, 1) == 1
        # m2 was never touched
        assert relay_register(client, 2) == 1
        assert not collector.events_of("tamper", "m2")
    assert agent.proc.poll() is None
    assert "Traceback" not in agent.text()


@pytest.mark.slow
def test_meter_switched_by_a_relay_module(tmp_path: Path, mosquitto: Broker, procs: Procs) -> None:
    port = free_port()
    loads = dict.fromkeys((1, 2), 2000)
    procs.sim(
        tcp_sim_args(port, loads, "--speed", "600", "--model", "sdm120", "--relay-unit", "9:2:3")
    )
    key = new_key()
    ms = meters([1, 2], model="sdm120")
    ms[1].update(relay_unit=9, relay_model="modbus-relay-module", relay_channel=3)
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), ms, key=key)
    status = tmp_path / "status.json"
    with Collector(mosquitto.port) as collector, modbus_tcp(port) as client:
        agent = procs.agent(config)
        wait_for(lambda: meter_status(status, "m2").get("relay") == "on", timeout=20)
        assert meter_status(status, "m1").get("relay") == "unknown"  # sdm120: no relay
        publish(mosquitto.port, CMD, command(key, "m2", "disconnect"))
        wait_for(lambda: collector.events_of("command_ack", "m2"), timeout=15)
        assert collector.events_of("command_ack", "m2")[0].data["ok"] is True
        coil = client.read_coils(3, count=1, device_id=9)
        assert not coil.isError() and coil.bits[0] is False
        # supply is off: the meter's energy stops advancing
        wait_for(lambda: meter_status(status, "m2").get("relay") == "off")
        frozen = meter_status(status, "m2")["import_wh"]
        m1 = meter_status(status, "m1")["import_wh"]
        wait_for(lambda: meter_status(status, "m1")["import_wh"] > m1 + 20, timeout=10)
        assert meter_status(status, "m2")["import_wh"] == frozen
        # a meter without any relay: the command is acknowledged as not carried out
        publish(mosquitto.port, CMD, command(key, "m1", "disconnect"))
        wait_for(lambda: collector.events_of("command_ack", "m1"), timeout=15)
        assert collector.events_of("command_ack", "m1")[0].data["ok"] is False
        assert collector.events_of("relay_fault", "m1")
        assert not collector.events_of("disconnect", "m1")  # the hub reads it as relay state
    assert "Traceback" not in agent.text()


@pytest.mark.slow
def test_a_command_that_fails_on_the_bus_is_withdrawn_not_carried_out_later(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    """The hub ends a command acknowledged ``ok: false`` as failed; were the agent to switch the
    relay once the meter answers again, relay and hub would disagree (soak seed 7 found it)."""
    port = free_port()
    procs.sim(tcp_sim_args(port, {1: 2000}))
    key = new_key()
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters([1]), key=key)
    status = tmp_path / "status.json"
    with Collector(mosquitto.port) as collector, modbus_tcp(port) as client:
        agent = procs.agent(config)
        wait_for(lambda: meter_status(status, "m1").get("relay") == "on", timeout=20)
        set_control(client, 1, "fault_param", 4)
        set_control(client, 1, "fault_mode", int(FaultMode.EXCEPTION))
        publish(mosquitto.port, CMD, command(key, "m1", "disconnect"))
        wait_for(lambda: collector.events_of("command_ack", "m1"), timeout=15)
        assert collector.events_of("command_ack", "m1")[0].data["ok"] is False
        assert collector.events_of("relay_fault", "m1")
        resp = client.read_holding_registers(0x9009, count=1, device_id=1)  # control block
        assert resp.registers == [1]  # still on: the write never got through
        set_control(client, 1, "fault_mode", int(FaultMode.NONE))
        polls = meter_status(status, "m1")["counters"]["polls"]
        wait_for(lambda: meter_status(status, "m1")["counters"]["polls"] >= polls + 4, timeout=20)
        assert relay_register(client, 1) == 1  # withdrawn: the meter answers, nothing switches
        assert meter_status(status, "m1")["relay_wanted"] is None
        assert not collector.events_of("disconnect", "m1")
        assert not collector.events_of("tamper", "m1")
        # sent again, it is carried out
        publish(mosquitto.port, CMD, command(key, "m1", "disconnect"))
        wait_for(lambda: collector.events_of("disconnect", "m1"), timeout=15)
        assert relay_register(client, 1) == 0
        assert [e.data["ok"] for e in collector.events_of("command_ack", "m1")] == [False, True]
    assert "Traceback" not in agent.text()
