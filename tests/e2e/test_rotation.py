"""Rotating a gateway's credentials loses no record (issue 15, item 5).

Real processes: ``smsa-hub serve``, Mosquitto, the Modbus TCP meter simulator and
``smsa-agent``. ``POST /gateways/{id}/rotate`` while the meter is metering: the agent applies
the rotation (signed with the old key), the hub switches on its acknowledgement, commands
under the new key are applied, the agent keeps the new key across a restart although its
configuration still names the old one, and every record is charged exactly once.
"""

import json
import signal
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import GATEWAY, agent_toml, provision, start_agent, start_hub, start_meter_sim
from demo.story import Member
from tests.conftest import Broker
from tests.e2e.conftest import System, start_system
from tests.e2e.test_delivery import assert_charged_exactly, command_of, stop_load_and_settle
from tests.support import free_port, mosquitto_config, run_mosquitto, stop, wait_for

pytestmark = pytest.mark.slow

SPEED = 60
UNA = Member("ivy", "Una", "m-ivy", 1, 3600, "", "")  # the name assert_charged_exactly reads


def agent_status(work: Path) -> dict[str, Any]:
    status: dict[str, Any] = json.loads((work / "agent.status.json").read_text())
    return status


def hub_key(work: Path) -> tuple[str, str | None]:
    """(command_key, next_command_key) of the gateway as the hub's database holds them."""
    with closing(sqlite3.connect(f"file:{work / 'hub.db'}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT command_key, next_command_key FROM gateways WHERE id = ?",
                           (GATEWAY,)).fetchone()  # fmt: skip
    return str(row[0]), row[1]


def applied(system: System, command_id: str) -> bool:
    return command_of(system.api, UNA.meter, command_id)["status"] == "applied"


def operator(system: System, action: str) -> str:
    return str(system.api.post(f"/meters/{UNA.meter}/{action}", {"reason": "test"})["command_id"])


@pytest.fixture
def una(processes: Processes, tmp_path: Path, mosquitto: Broker) -> Iterator[tuple[System, Path]]:
    work = tmp_path / "work"
    work.mkdir()
    system = start_system(processes, work, mosquitto.url, [UNA], speed=SPEED,
                          topups={"ivy": "500.00"})  # fmt: skip
    try:
        yield system, work
    finally:
        processes.stop_all()
        system.modbus.close()
        system.api.close()


def test_rotating_credentials_loses_no_record(una: tuple[System, Path]) -> None:
    system, work = una
    start_wh = int(system.api.get(f"/meters/{UNA.meter}")["import_wh"])
    old_key, _ = hub_key(work)
    rotated = system.api.post(f"/gateways/{GATEWAY}/rotate", {})
    assert rotated["command_key"] != old_key and rotated["mqtt_password"]
    assert hub_key(work) == (old_key, rotated["command_key"])  # the old key until the ack
    wait_for(lambda: applied(system, rotated["command_id"]), timeout=30)
    assert hub_key(work) == (rotated["command_key"], None)
    (audit,) = system.events("gateway_rotated")
    assert audit["data"]["gateway"] == GATEWAY and old_key not in json.dumps(audit)

    cut = operator(system, "disconnect")  # signed with the new key
    wait_for(lambda: applied(system, cut) and not system.relay_on(UNA.unit), timeout=30)
    system.procs.stop("agent")  # its configuration still names the old key
    system.procs.start("agent-2", ["smsa-agent", "--config", str(work / "agent.toml")])
    back = operator(system, "reconnect")
    wait_for(lambda: applied(system, back) and system.relay_on(UNA.unit), timeout=30)

    end_wh = stop_load_and_settle(system, work)
    assert_charged_exactly(system, start_wh, end_wh)
    assert agent_status(work)["stats"]["rejected"] == 0
    logs = "".join(p.read_text() for p in system.procs.logs.glob("agent*.log"))
    assert "receipt refused" not in logs and "rejected" not in logs, logs[-3000:]


def test_the_rotated_mqtt_password_takes_over_at_the_next_connection(
    processes: Processes, tmp_path: Path
) -> None:
    """Mosquitto with a password file written by ``smsa-hub mosquitto-config``: after the
    rotation's acknowledgement the file is written again and Mosquitto reloaded; the agent,
    restarted with its configuration still naming the old password, connects with the new one,
    and the old password is refused."""
    work, broker_dir = tmp_path / "work", tmp_path / "broker"
    work.mkdir()
    broker_dir.mkdir()
    port = free_port()
    db = f"sqlite:///{work / 'hub.db'}"
    hub_url = f"mqtt://smsa-hub:{'h' * 24}@127.0.0.1:{port}"

    def password_file() -> None:
        mosquitto_config(broker_dir / "conf", db, hub_url)

    password_file()  # the hub's own user only, on a new database
    conf = (f"listener {port} 127.0.0.1\nallow_anonymous false\n"
            f"password_file {broker_dir / 'conf' / 'passwd'}\n")  # fmt: skip
    broker = run_mosquitto(conf, broker_dir, port)
    api: HubApi | None = None
    try:
        url, admin_key = start_hub(processes, work, hub_url)
        api = HubApi(url, admin_key)
        gateway: dict[str, Any] = {}
        command_key = provision(api, [UNA], gateway_out=gateway)
        api.topup("ivy", "500.00")
        password_file()
        broker.send_signal(signal.SIGHUP)
        sim_port = free_port()
        start_meter_sim(processes, "meter-sim", ["--tcp", f"127.0.0.1:{sim_port}"], [UNA], SPEED)
        buses = [{"name": "tcp0", "transport": "tcp", "host": "127.0.0.1", "port": sim_port}]
        old_url = f"mqtt://{GATEWAY}:{gateway['mqtt_password']}@127.0.0.1:{port}"
        start_agent(processes, work, agent_toml(old_url, command_key, work / "agent.db", buses,
                                                [UNA]))  # fmt: skip
        wait_for(lambda: api.get(f"/meters/{UNA.meter}")["last_seq"], timeout=20)

        rotated = api.post(f"/gateways/{GATEWAY}/rotate", {})
        wait_for(lambda: command_of(api, UNA.meter, rotated["command_id"])["status"] == "applied",
                 timeout=30)  # fmt: skip
        password_file()
        broker.send_signal(signal.SIGHUP)
        assert not can_connect(port, GATEWAY, gateway["mqtt_password"])
        assert can_connect(port, GATEWAY, rotated["mqtt_password"])

        processes.stop("agent")
        seq = int(api.get(f"/meters/{UNA.meter}")["last_seq"])
        processes.start("agent-2", ["smsa-agent", "--config", str(work / "agent.toml")])
        # its new records reach the hub: it connected with the new password (the old is refused)
        wait_for(lambda: int(api.get(f"/meters/{UNA.meter}")["last_seq"]) > seq + 2, timeout=30)
        wait_for(lambda: agent_status(work)["uplink"]["connected"], timeout=10)
    finally:
        processes.stop_all()
        if api is not None:
            api.close()
        stop(broker)


def can_connect(port: int, user: str, password: str) -> bool:
    """Whether Mosquitto accepts ``user`` with ``password`` (MQTT 3.1.1, a clean session)."""
    outcome: list[bool] = []
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"probe-{password[:6]}")  # fmt: skip
    client.username_pw_set(user, password)
    client.on_connect = lambda _c, _u, _f, reason, _p: outcome.append(not reason.is_failure)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_for(lambda: outcome, timeout=10)
    finally:
        client.disconnect()
        client.loop_stop()
    return outcome[0]
