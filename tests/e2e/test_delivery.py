"""End-to-end delivery (issue 12): usage is kept until the hub has settled it, commands until
the meter has applied them, whatever the broker forgets.

Real processes: ``smsa-hub serve`` on a SQLite file, Mosquitto (killed with SIGKILL and started
again without its store: no sessions, no queued messages), the Modbus TCP meter simulator and
``smsa-agent``, provisioned through the HTTP API. The relay and the energy register are read
from the simulator over Modbus.
"""

import json
import random
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymodbus.client import ModbusTcpClient

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import (
    GATEWAY,
    agent_toml,
    provision,
    start_agent,
    start_hub,
    start_meter_sim,
)
from demo.story import Member
from protocol.topics import topic
from tests.agent.helpers import set_control
from tests.conftest import Broker
from tests.e2e.conftest import Recorder, System, minor, start_system
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

SPEED = 60  # simulated seconds per second: 3600 W is 60 Wh a second
LOAD_W = 3600
IVY = Member("ivy", "Ivy", "m-ivy", 1, LOAD_W, "", "")


def agent_status(work: Path) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((work / "agent.status.json").read_text())
    return status


def flushed(work: Path) -> bool:
    """The agent is connected and has published everything in its outbox (none confirmed)."""
    status = agent_status(work)
    depth = int(status["outbox_depth"])
    return (
        bool(status["uplink"]["connected"]) and depth > 0 and status["outbox_unconfirmed"] == depth
    )


def launch_hub(system: System, work: Path, broker: Broker, name: str) -> Callable[[], None]:
    """Start the hub again on its database and port; returns the wait for it to answer (a hub
    started while the broker is down waits a while for it before it serves)."""
    port = system.hub_url.rsplit(":", 1)[1]
    db = f"sqlite:///{work / 'hub.db'}"
    system.procs.start(
        name, ["smsa-hub", "serve", "--db", db, "--mqtt", broker.url, "--http", f"127.0.0.1:{port}"]
    )

    def answers() -> bool:
        try:
            return httpx.get(f"{system.hub_url}/healthz", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return lambda: system.procs.wait_ready(name, answers, timeout=40)


def stop_load_and_settle(system: System, work: Path) -> int:
    """Stop the meter's load; wait until the hub has every reading. The final register, in Wh.

    (The agent still closes an empty interval every second, so its outbox is rarely empty for
    long: the check is the hub's register and, in ``assert_charged_exactly``, every seq.)"""
    system.import_wh(IVY.unit)  # connects the Modbus client
    set_control(system.modbus, IVY.unit, "load_w", 0)  # the register stops where it is now
    end_wh = system.import_wh(IVY.unit)
    wait_for(lambda: system.api.get(f"/meters/{IVY.meter}")["import_wh"] == end_wh, timeout=60)
    return end_wh


def assert_charged_exactly(system: System, start_wh: int, end_wh: int) -> None:
    """The hub charged the register span times the tariff (within one cent per component), every
    seq once, and the ledger check is ok."""
    usage = [e for e in system.entries("ivy") if e["kind"] == "usage"]
    charged = -sum(minor(e["amount"]) for e in usage)
    components = system.api.get("/tariffs/residential")["components"]
    exact = (end_wh - start_wh) * sum(Decimal(c["per_kwh"]) for c in components) / 10  # cents
    assert abs(charged - exact) < len(components), (start_wh, end_wh, charged, exact)
    seqs = [e["seq"] for e in usage]  # (an interval without energy posts no line)
    assert len(seqs) == len(set(seqs)), "a record was posted twice"
    check = system.api.get("/ledger/check")
    assert check["ok"], check


@pytest.fixture
def ivy_system(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> Iterator[tuple[System, Path, int]]:
    """The system with Ivy's meter running; (system, work folder, first record's register)."""
    work = tmp_path / "work"
    work.mkdir()
    usage = Recorder(mosquitto.port, topic(GATEWAY, "usage"))
    try:
        usage.wait_subscribed()
        system = start_system(processes, work, mosquitto.url, [IVY], speed=SPEED,
                              topups={"ivy": "500.00"})  # fmt: skip
        first = wait_for(lambda: usage.since(0), timeout=10)[0][1]["records"][0]
    finally:
        usage.close()
    assert first["seq"] == 1, first
    try:
        yield system, work, int(first["import_start"])
    finally:
        processes.stop_all()
        system.modbus.close()
        system.api.close()


def test_broker_lost_its_sessions_and_hub_down_until_the_gateway_flushed(
    ivy_system: tuple[System, Path, int], mosquitto: Broker
) -> None:
    system, work, start_wh = ivy_system
    mosquitto.crash()
    # the gateway meters offline: disconnected, and new records wait in its outbox
    before = agent_status(work)["stats"]["records"]
    wait_for(lambda: not agent_status(work)["uplink"]["connected"]
             and agent_status(work)["stats"]["records"] > before + 1, timeout=20)  # fmt: skip
    system.procs.stop("hub")
    mosquitto.start()
    # the gateway reconnects and flushes into a broker where nobody subscribes: the broker
    # acknowledges and drops every message; the gateway keeps them all
    wait_for(lambda: flushed(work), timeout=30)
    launch_hub(system, work, mosquitto, "hub-2")()
    end_wh = stop_load_and_settle(system, work)
    assert_charged_exactly(system, start_wh, end_wh)


def test_hub_and_gateway_reconnect_in_random_order(
    ivy_system: tuple[System, Path, int], mosquitto: Broker
) -> None:
    """Ten seeded outages: the broker crashes and loses its sessions, the hub stops; then the
    broker and the hub come back in a random order with random delays."""
    system, work, start_wh = ivy_system
    for seed in range(10):
        rng = random.Random(seed)
        mosquitto.crash()
        system.procs.stop("hub" if seed == 0 else f"hub-{seed}")
        time.sleep(rng.uniform(0.2, 1.5))
        hub_first = rng.random() < 0.5
        if hub_first:
            ready = launch_hub(system, work, mosquitto, f"hub-{seed + 1}")
            time.sleep(rng.uniform(0, 1.5))
            mosquitto.start()
        else:
            mosquitto.start()
            time.sleep(rng.uniform(0, 2.5))
            ready = launch_hub(system, work, mosquitto, f"hub-{seed + 1}")
        ready()
        time.sleep(rng.uniform(0.5, 2))
    end_wh = stop_load_and_settle(system, work)
    assert_charged_exactly(system, start_wh, end_wh)


def gateway_not_started(
    processes: Processes, work: Path, broker: Broker, *, ttl_s: int | None = None
) -> tuple[System, str]:
    """The hub (commands valid ``ttl_s``), provisioned, Ivy topped up, and her meter simulated;
    the system and the agent's configuration, the agent not started yet."""
    work.mkdir()
    env = {"SMSA_HUB_COMMAND_TTL_S": str(ttl_s)} if ttl_s else None
    hub_url, admin_key = start_hub(processes, work, broker.url, env=env)
    api = HubApi(hub_url, admin_key)
    command_key = provision(api, [IVY])
    api.topup("ivy", "500.00")
    sim_port = free_port()
    start_meter_sim(processes, "meter-sim", ["--tcp", f"127.0.0.1:{sim_port}"], [IVY], SPEED)
    buses = [{"name": "tcp0", "transport": "tcp", "host": "127.0.0.1", "port": sim_port}]
    config = agent_toml(broker.url, command_key, work / "agent.db", buses, [IVY])
    modbus = ModbusTcpClient("127.0.0.1", port=sim_port, timeout=1.0, retries=0)
    return System(processes, api, hub_url, sim_port, broker.url, [IVY], modbus), config


def command_of(api: HubApi, meter: str, command_id: str) -> dict[str, Any]:
    for command in api.get(f"/meters/{meter}/commands"):
        if command["id"] == command_id:
            return dict(command)
    raise AssertionError(f"command {command_id} not listed")


def command_states(api: HubApi, meter: str, command_id: str) -> list[str]:
    return [step["status"] for step in command_of(api, meter, command_id)["history"]]


def command_attempts(api: HubApi, meter: str, command_id: str) -> int:
    return int(command_of(api, meter, command_id)["attempts"])


def test_operator_commands_reach_the_relay_before_first_connect_and_across_a_broker_crash(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> None:
    work = tmp_path / "work"
    system, config = gateway_not_started(processes, work, mosquitto)
    api = system.api
    try:
        # the gateway has never connected: the broker has no session to queue it in
        off = api.post(f"/meters/{IVY.meter}/disconnect", {"reason": "before first connect"})
        assert off["status"] == "queued"
        wait_for(lambda: command_states(api, IVY.meter, off["command_id"])[-1] == "sent")
        assert system.relay_on(IVY.unit)
        # the operator sees a meter whose last command is not applied yet
        assert api.get(f"/meters/{IVY.meter}")["pending_command"] == "sent"
        start_agent(processes, work, config)
        wait_for(lambda: not system.relay_on(IVY.unit), timeout=30)
        wait_for(lambda: command_states(api, IVY.meter, off["command_id"]) == [
            "queued", "sent", "applied"], timeout=20)  # fmt: skip
        assert api.get(f"/meters/{IVY.meter}")["pending_command"] is None

        # issued while the broker is down (it then comes back without its sessions)
        mosquitto.crash()
        on = api.post(f"/meters/{IVY.meter}/reconnect", {"reason": "while the broker is down"})
        wait_for(lambda: command_attempts(api, IVY.meter, on["command_id"]) >= 1)
        assert command_states(api, IVY.meter, on["command_id"]) == ["queued"]  # no PUBACK
        assert not system.relay_on(IVY.unit)
        mosquitto.start()
        wait_for(lambda: system.relay_on(IVY.unit), timeout=40)
        wait_for(lambda: command_states(api, IVY.meter, on["command_id"]) == [
            "queued", "sent", "applied"], timeout=20)  # fmt: skip
        assert command_states(api, IVY.meter, off["command_id"])[-1] == "applied"
        system.modbus.close()
    finally:
        processes.stop_all()
        api.close()


def test_a_command_that_expires_while_the_gateway_is_away_never_acts(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> None:
    work = tmp_path / "work"
    system, config = gateway_not_started(processes, work, mosquitto, ttl_s=10)
    api = system.api
    try:
        start_agent(processes, work, config)
        wait_for(lambda: api.get(f"/meters/{IVY.meter}")["last_seq"], timeout=20)
        processes.stop("agent")  # the gateway is away (its session at the broker stays)

        off = api.post(f"/meters/{IVY.meter}/disconnect", {"reason": "while away"})
        wait_for(lambda: command_states(api, IVY.meter, off["command_id"])[-1] == "expired",
                 timeout=30)  # fmt: skip
        expired = wait_for(lambda: system.events("command_expired", IVY.meter), timeout=10)
        assert off["command_id"] in {e["data"]["command_id"] for e in expired}

        # the gateway returns: the broker still delivers the queued command; it is refused
        start_agent(processes, work, config, name="agent-2")
        rejected = wait_for(lambda: system.events("command_rejected"), timeout=30)
        assert "expired" in rejected[-1]["reason"]
        assert system.relay_on(IVY.unit), "an expired command switched the relay"
        assert command_states(api, IVY.meter, off["command_id"])[-1] == "expired"
        system.modbus.close()
    finally:
        processes.stop_all()
        api.close()
