"""The soak's system, all real processes: Mosquitto, the hub, one agent per gateway, a Modbus TCP
simulator and an RS-485 simulator (on a socat pty pair) per gateway; each MQTT client reaches
the broker through a :class:`tests.soak.proxy.Proxy` the harness owns.

Built from the demo's and the tests' own helpers (``demo.stack``, ``demo.procs``,
``tests.support.run_mosquitto``); this module adds only what the soak needs on top: several
gateways, restarts on the same ports, and the simulators' control block.
"""

import logging
import os
import random
import subprocess
import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusTcpClient

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import start_agent, start_hub, start_meter_sim
from demo.story import PROVIDERS, TARIFF, Member
from firmware_sim.control import FaultMode
from firmware_sim.control import field as control_field
from firmware_sim.pty import SocatPair
from tests.soak.proxy import Proxy
from tests.soak.schedule import MeterRef
from tests.support import free_port, run_mosquitto, stop

log = logging.getLogger(__name__)

TCP_METERS = 10  # per gateway, on its Modbus TCP simulator
RTU_METERS = 3  # per gateway, on its RS-485 simulator behind a socat pty pair
SPEED = 60  # simulated seconds per real second once the run starts
RECONNECT_ABOVE = 100  # minor units: every soak customer's reconnect level
RULES = {"reconnect_above": RECONNECT_ABOVE, "low_credit": [200]}
MAX_OUTBOX_ROWS = 30  # each agent's outbox bound, so a partition of seconds reaches it
HUB_ENV = {"SMSA_HUB_COMMAND_TTL_S": "120", "SMSA_HUB_LOG_LEVEL": "WARNING"}
BROKER_CONF = """listener {port} 127.0.0.1
allow_anonymous true
persistence true
autosave_interval 1
max_queued_messages 0
"""
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


@dataclass
class Gateway:
    index: int
    work: Path
    proxy: Proxy
    meters: list[MeterRef]
    sim_port: int = 0
    control_port: int = 0
    pty: SocatPair | None = None
    config: Path | None = None
    clock_offset: int = 0

    @property
    def id(self) -> str:
        return f"gw-{self.index}"

    @property
    def agent(self) -> str:
        return f"agent-{self.index}"

    def control_port_of(self, meter: MeterRef) -> int:
        return self.sim_port if meter.bus == "tcp0" else self.control_port

    def status_path(self) -> Path:
        return self.work / "agent.status.json"


@dataclass
class World:
    work: Path
    gateway_count: int
    procs: Processes
    stack: ExitStack
    broker_port: int = field(default_factory=free_port)
    hub_port: int = field(default_factory=free_port)
    broker: subprocess.Popen[bytes] | None = None
    hub_proxy: Proxy | None = None
    api: HubApi | None = None
    admin_key: str = ""
    gateways: list[Gateway] = field(default_factory=list)
    customers: dict[str, str] = field(default_factory=dict)  # meter id -> customer id
    protected: set[str] = field(default_factory=set)  # customer ids
    initial_topups: dict[str, int] = field(default_factory=dict)  # customer id -> minor units
    started: list[tuple[str, int]] = field(default_factory=list)  # (name, pid) of every process
    _control_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def meters(self) -> list[MeterRef]:
        return [m for g in self.gateways for m in g.meters]

    # -- the broker -------------------------------------------------------------------------

    def start_broker(self) -> None:
        folder = self.work / "broker"
        folder.mkdir(exist_ok=True)
        self.broker = run_mosquitto(
            BROKER_CONF.format(port=self.broker_port), folder, self.broker_port
        )
        self.started.append(("mosquitto", self.broker.pid))

    def kill_broker(self, *, keep_store: bool) -> None:
        """SIGKILL; without ``keep_store`` its persistence file goes too (a fresh node)."""
        assert self.broker is not None
        self.broker.kill()
        self.broker.wait(10)
        if not keep_store:
            (self.work / "broker" / "mosquitto.db").unlink(missing_ok=True)

    def stop_broker(self) -> None:
        if self.broker is not None:
            stop(self.broker)

    # -- the hub ----------------------------------------------------------------------------

    def start_hub(self) -> None:
        assert self.hub_proxy is not None
        first = not self.admin_key  # a restart keeps the admin key it has
        _, key = start_hub(self.procs, self.work, self.hub_proxy.url, port=self.hub_port,
                           env=HUB_ENV, new_key=first)  # fmt: skip
        self.admin_key = self.admin_key or key
        self.started.append(("hub", self.procs.get("hub").pid))

    def kill_hub(self) -> None:
        self.procs.stop("hub", kill=True)

    # -- agents -----------------------------------------------------------------------------

    def start_agent(self, gw: Gateway) -> None:
        assert gw.config is not None
        env = {}
        if gw.clock_offset:
            env = {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": f"{gw.clock_offset:+d}s"}
        proc = self.procs.start(gw.agent, ["smsa-agent", "--config", str(gw.config)], env=env)
        self.started.append((gw.agent, proc.pid))

    def kill_agent(self, gw: Gateway, *, kill: bool = True) -> None:
        self.procs.stop(gw.agent, kill=kill)

    def running(self, name: str) -> bool:
        return self.procs.get(name).poll() is None

    # -- the simulators' control block ------------------------------------------------------

    def control(self, gw: Gateway, meter: MeterRef, name: str, *values: int) -> None:
        """Write ``values`` at control field ``name`` of ``meter``'s simulated device."""
        with self._control_lock, _client(gw.control_port_of(meter)) as client:
            result = client.write_registers(
                control_field(name).address, list(values), device_id=meter.unit
            )
            if result.isError():
                raise RuntimeError(f"control write {name} on {meter.id}: {result}")

    def fault(self, gw: Gateway, meter: MeterRef, mode: FaultMode, param: int = 0) -> None:
        self.control(gw, meter, "fault_mode", int(mode), param)

    def read_control(self, gw: Gateway, meter: MeterRef) -> dict[str, int]:
        """The device's exact energy (Wh), relay and fault mode, from its control block."""
        with self._control_lock, _client(gw.control_port_of(meter)) as client:
            base = control_field("load_w").address
            result = client.read_holding_registers(base, count=0x15, device_id=meter.unit)
            if result.isError():
                raise RuntimeError(f"control read on {meter.id}: {result}")
            words = list(result.registers)

        def value(name: str) -> int:
            f = control_field(name)
            out = 0
            for word in words[f.address - base : f.end - base]:
                out = (out << 16) | word
            return out

        return {n: value(n) for n in ("energy_wh", "relay", "fault_mode", "speed_centi")}

    def set_speed(self, speed: int) -> None:
        """Simulated seconds per real second on every simulator (0 freezes every register)."""
        for gw in self.gateways:
            for bus in ("tcp0", "rs485"):
                first = next(m for m in gw.meters if m.bus == bus)
                self.control(gw, first, "speed_centi", speed * 100)


def build(world: World, rng: random.Random) -> None:
    """Start everything and provision it through the API; the simulators stay paused (speed
    0, every register at 0) until ``world.set_speed``."""
    world.start_broker()
    world.hub_proxy = Proxy("hub", world.broker_port)
    world.hub_proxy.start()
    world.stack.callback(world.hub_proxy.stop)
    world.start_hub()
    world.api = HubApi(f"http://127.0.0.1:{world.hub_port}", world.admin_key)
    world.stack.callback(world.api.close)
    api = world.api
    for provider in PROVIDERS:
        api.post("/providers", provider)
    api.post("/tariffs", TARIFF)
    for g in range(world.gateway_count):
        proxy = Proxy(f"gw-{g}", world.broker_port)
        proxy.start()
        world.stack.callback(proxy.stop)
        meters = [MeterRef(g, "tcp0", u) for u in range(1, TCP_METERS + 1)]
        meters += [MeterRef(g, "rs485", u) for u in range(1, RTU_METERS + 1)]
        gw = Gateway(g, world.work / f"gw-{g}", proxy, meters)
        gw.work.mkdir()
        world.gateways.append(gw)
        key = api.post("/gateways", {"id": gw.id})["command_key"]
        loads = {m: rng.randrange(200, 3000) for m in meters}
        for m in meters:
            customer = f"c-{g}-{m.bus}-{m.unit}"
            protected = rng.random() < 0.12
            body = {"id": customer, "name": customer, "protected": protected, "credit_rules": RULES}
            api.post("/customers", body)
            api.post(
                "/meters",
                {"id": m.id, "gateway": gw.id, "customer": customer, "tariff": TARIFF["id"]},
            )
            cents = rng.randrange(100, 400)
            api.post(
                f"/accounts/{customer}/topups",
                {"amount": f"{cents // 100}.{cents % 100:02d}", "reference": "soak-initial"},
                **{"Idempotency-Key": f"initial-{customer}"},
            )
            world.customers[m.id] = customer
            world.initial_topups[customer] = cents
            if protected:
                world.protected.add(customer)
        _start_meters(world, gw, loads)
        gw.config = gw.work / "agent.toml"
        start_agent(world.procs, gw.work, agent_toml(gw, key), name=gw.agent)
        world.started.append((gw.agent, world.procs.get(gw.agent).pid))


def _start_meters(world: World, gw: Gateway, loads: dict[MeterRef, int]) -> None:
    def members(bus: str) -> list[Member]:
        return [Member("", "", m.id, m.unit, loads[m], "0", "") for m in gw.meters if m.bus == bus]

    gw.sim_port = free_port()
    name = f"sim-{gw.index}-tcp"
    start_meter_sim(world.procs, name, ["--tcp", f"127.0.0.1:{gw.sim_port}"], members("tcp0"), 0)
    world.started.append((name, world.procs.get(name).pid))
    gw.pty = world.stack.enter_context(SocatPair())
    assert gw.pty.pid is not None
    world.started.append((f"socat-{gw.index}", gw.pty.pid))
    gw.control_port = free_port()
    name = f"sim-{gw.index}-rtu"
    where = ["--serial", gw.pty.server, "--control-tcp", f"127.0.0.1:{gw.control_port}"]
    start_meter_sim(world.procs, name, where, members("rs485"), 0)
    world.started.append((name, world.procs.get(name).pid))


def agent_toml(gw: Gateway, command_key: str) -> str:
    assert gw.pty is not None
    fast = {"timeout_s": 0.3, "retries": 1, "backoff_s": 1.0, "backoff_max_s": 4.0}
    buses: list[dict[str, Any]] = [
        {"name": "tcp0", "transport": "tcp", "host": "127.0.0.1", "port": gw.sim_port, **fast},
        {"name": "rs485", "transport": "rtu", "device": gw.pty.client, **fast},
    ]
    lines = [
        f'gateway_id = "{gw.id}"',
        "[mqtt]",
        f'url = "{gw.proxy.url}"',
        "keepalive_s = 5",
        "resend_after_s = 3.0",
        "[security]",
        f'command_key = "{command_key}"',
        "[storage]",
        f'path = "{gw.work / "agent.db"}"',
        f"max_outbox_rows = {MAX_OUTBOX_ROWS}",
        "[timing]",
        "poll_interval_s = 0.5",
        "report_interval_s = 1.0",
        "[tokens]",
        f"port = {free_port()}",
    ]
    for bus in buses:
        lines.append("[[buses]]")
        lines += [f"{k} = {_toml(v)}" for k, v in bus.items()]
    for m in gw.meters:
        lines += [
            "[[meters]]",
            f'id = "{m.id}"',
            f'bus = "{m.bus}"',
            f"unit = {m.unit}",
            'model = "dds238-2-zn-sr"',
        ]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    return str(value) if isinstance(value, (int, float)) else f'"{value}"'


def _client(port: int) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2.0, retries=1)
    if not client.connect():
        raise RuntimeError(f"no Modbus TCP answer on port {port}")
    return client


def leaked(started: list[tuple[str, int]]) -> list[str]:
    """The processes (or members of their process groups) still alive."""
    out = []
    for name, pid in started:
        if _alive(pid):
            out.append(f"{name} (pid {pid})")
            continue
        try:
            os.killpg(pid, 0)
        except (ProcessLookupError, PermissionError):
            continue
        out.append(f"{name}'s process group {pid}")
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
