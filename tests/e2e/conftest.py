"""A real SMSA system for end-to-end tests: hub, simulated meters and agent, built from the demo's
own building blocks (demo.stack, demo.procs, demo.api) and provisioned through the HTTP API."""

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from pymodbus.client import ModbusTcpClient

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import agent_toml, provision, start_agent, start_hub, start_meter_sim
from demo.story import Member
from hardware.regmap import load_model
from tests.support import free_port, wait_for

MODEL = load_model("dds238-2-zn-sr")
RELAY = MODEL.register("relay")
IMPORT = MODEL.register("import_energy")
POLL_INTERVAL_S = 0.5  # what demo.stack.agent_toml writes


def minor(money: str) -> int:
    """Minor units of an API money string ("-1.25" -> -125)."""
    return int(Decimal(money) * 100)


@dataclass
class System:
    procs: Processes
    api: HubApi
    hub_url: str
    sim_port: int
    broker_url: str
    members: list[Member]
    modbus: ModbusTcpClient

    def relay_on(self, unit: int) -> bool:
        words = self._read(RELAY.address, RELAY.width, unit)
        return words[0] == 1

    def import_wh(self, unit: int) -> int:
        return MODEL.base_units(IMPORT, self._read(IMPORT.address, IMPORT.width, unit))

    def _read(self, address: int, count: int, unit: int) -> list[int]:
        if not self.modbus.connected:
            self.modbus.connect()
        result = self.modbus.read_holding_registers(address, count=count, device_id=unit)
        assert not result.isError(), f"Modbus read {address:#x} unit {unit}: {result}"
        return list(result.registers)

    def balance(self, customer: str) -> int:
        return minor(self.api.get(f"/accounts/{customer}")["balance"])

    def events(self, kind: str, meter: str | None = None, **params: str) -> list[dict[str, Any]]:
        if meter is not None:
            params["meter"] = meter
        rows: list[dict[str, Any]] = self.api.get("/events", kind=kind, limit="1000", **params)
        return rows

    def entries(self, account: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        before: str | None = None
        while True:
            params = {"limit": "500", **({"before": before} if before else {})}
            page = self.api.get(f"/accounts/{account}/entries", **params)
            items += page["items"]
            if page["next_before"] is None:
                return items
            before = str(page["next_before"])

    def tails(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.procs.logs.glob("*.log"))
        )


def start_system(
    procs: Processes,
    work: Path,
    broker_url: str,
    members: list[Member],
    *,
    speed: float,
    topups: dict[str, str],
    hub_env: dict[str, str] | None = None,
) -> System:
    """Hub on a temporary SQLite file (``hub_env``: its ``SMSA_HUB_*`` settings), provisioned
    through the API, then the Modbus TCP meter simulator and the agent (poll 0.5 s, report 1 s);
    ``topups`` are made before the meters run."""
    hub_url, admin_key = start_hub(procs, work, broker_url, env=hub_env)
    api = HubApi(hub_url, admin_key)
    try:
        command_key = provision(api, members)
        for customer, amount in topups.items():  # in credit before the first reading is priced
            api.topup(customer, amount)
        sim_port = free_port()
        start_meter_sim(procs, "meter-sim", ["--tcp", f"127.0.0.1:{sim_port}"], members, speed)
        buses = [{"name": "tcp0", "transport": "tcp", "host": "127.0.0.1", "port": sim_port}]
        config = agent_toml(broker_url, command_key, work / "agent.db", buses, members)
        start_agent(procs, work, config)
        for m in members:  # every meter reports before the test starts
            wait_for(partial(_reported, api, m.meter), timeout=20)
    except BaseException:
        api.close()
        raise
    modbus = ModbusTcpClient("127.0.0.1", port=sim_port, timeout=1.0, retries=0)
    return System(procs, api, hub_url, sim_port, broker_url, members, modbus)


class Recorder:
    """A paho 2.x subscriber that keeps every message on ``topic`` with its arrival time
    (``time.monotonic()``); it subscribes again whenever it reconnects."""

    def __init__(self, broker_port: int, topic: str) -> None:
        self.topic = topic
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rec-{id(self)}")
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 1)
        self._client.connect("127.0.0.1", broker_port, keepalive=10)
        self._client.loop_start()

    def wait_subscribed(self, timeout: float = 10) -> None:
        wait_for(self._subscribed.is_set, timeout=timeout)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def since(self, start: float) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if t >= start]

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        self._subscribed.clear()
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        with self._lock:
            self.messages.append((now, json.loads(msg.payload)))


def tcp_agent_toml(
    gateway: str, broker_url: str, key: str, work: Path, sim_port: int, *,
    meters: dict[str, tuple[int, str]], extra: str = "",
) -> str:  # fmt: skip
    """An agent reading ``meters`` (id -> unit, register map) on one simulator over Modbus TCP,
    fast: a poll every 0.5 s, an interval a second; ``extra`` adds TOML sections."""
    listed = "".join(f'[[meters]]\nid = "{m}"\nbus = "tcp0"\nunit = {unit}\nmodel = "{model}"\n'
                     for m, (unit, model) in meters.items())  # fmt: skip
    return f"""gateway_id = "{gateway}"
[mqtt]
url = "{broker_url}"
[security]
command_key = "{key}"
[storage]
path = "{work / "agent.db"}"
[timing]
poll_interval_s = 0.5
report_interval_s = 1.0
{extra}[[buses]]
name = "tcp0"
transport = "tcp"
host = "127.0.0.1"
port = {sim_port}
{listed}"""


def _reported(api: HubApi, meter: str) -> bool:
    return bool(api.get(f"/meters/{meter}")["last_seq"])


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """Every process a test starts, all stopped at the end (logs in tmp_path/logs)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = Processes(logs)
    try:
        yield procs
    finally:
        procs.stop_all()
