"""Start the demo's system (hub, simulated meters, agent) and provision it through the API."""

import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from demo.api import HubApi
from demo.procs import DemoError, Processes, free_port
from demo.story import CAST, PROVIDERS, SERIAL_MEMBER, SPONSOR, SPONSOR_TOPUP, TARIFF, Member
from demo.view import View
from firmware_sim.pty import socat_pair

GATEWAY = "gw-demo"


@dataclass
class Stack:
    procs: Processes
    api: HubApi
    hub_url: str
    operator_key: str
    # bob's own customer key: the demo reads his notifications as he would
    bob_api: HubApi
    members: list[Member] = field(default_factory=list)
    ledger_ok: bool = False

    def meters(self) -> list[dict[str, Any]]:
        rows = []
        for member in self.members:
            meter = self.api.get(f"/meters/{member.meter}")
            meter.setdefault("customer", member.customer)
            meter["balance"] = self.api.get(f"/accounts/{member.customer}")["balance"]
            rows.append(meter)
        return rows

    def providers(self) -> list[dict[str, Any]]:
        return [self.api.get(f"/providers/{p['id']}") for p in PROVIDERS]


def start_stack(
    procs: Processes,
    stack: ExitStack,
    *,
    work: Path,
    broker_url: str,
    speed: float,
    serial: bool,
    view: View,
) -> Stack:
    hub_url, admin_key = start_hub(procs, work, broker_url)
    operator_key = create_key(work, "operator")
    view.say(f"hub {hub_url} ready")
    api = HubApi(hub_url, admin_key)
    stack.callback(api.close)
    members = [*CAST, SERIAL_MEMBER] if serial else list(CAST)
    command_key = provision(api, members)
    sim_port = free_port()
    start_meter_sim(procs, "meter-sim", ["--tcp", f"127.0.0.1:{sim_port}"], CAST, speed)
    buses = [{"name": "tcp0", "transport": "tcp", "host": "127.0.0.1", "port": sim_port}]
    if serial:
        pair = stack.enter_context(socat_pair())
        start_meter_sim(procs, "meter-sim-rs485", ["--serial", pair.server], [SERIAL_MEMBER], speed)
        buses.append({"name": "rs485", "transport": "rtu", "device": pair.client})
    start_agent(procs, work, agent_toml(broker_url, command_key, work / "agent.db", buses, members))
    view.say("meters and agent running; topping up")
    for member in members:
        api.topup(member.customer, member.topup)
    bob_api = HubApi(hub_url, create_key(work, "customer", account="bob"))
    stack.callback(bob_api.close)
    return Stack(procs, api, hub_url, operator_key, bob_api, members)


def start_hub(
    procs: Processes,
    work: Path,
    broker_url: str,
    *,
    name: str = "hub",
    port: int | None = None,
    env: dict[str, str] | None = None,
    new_key: bool = True,
) -> tuple[str, str]:
    """``smsa-hub serve`` on ``work/hub.db`` and ``port`` (a free one by default): (its URL, an
    admin key, or "" without ``new_key``: a restart keeps using the keys it has). ``name``
    names its log; ``env`` adds ``SMSA_HUB_*`` settings."""
    admin_key = create_key(work, "admin") if new_key else ""
    port = port or free_port()
    hub_url = f"http://127.0.0.1:{port}"
    db = f"sqlite:///{work / 'hub.db'}"
    procs.start(
        name,
        ["smsa-hub", "serve", "--db", db, "--mqtt", broker_url, "--http", f"127.0.0.1:{port}"],
        env=env,
    )
    procs.wait_ready(name, lambda: _healthy(hub_url))
    return hub_url, admin_key


def start_meter_sim(
    procs: Processes, name: str, transport: list[str], members: list[Member], speed: float
) -> None:
    """``smsa-meter-sim`` with one meter per member, returning once it listens."""
    meters = [a for m in members for a in ("--meter", f"{m.unit}:{m.load_w}")]
    procs.start(name, ["smsa-meter-sim", *transport, *meters, "--speed", str(speed)])
    procs.wait_ready(name, lambda: "listening" in procs.tail(name, 20))


def start_agent(procs: Processes, work: Path, config: str, *, name: str = "agent") -> None:
    """``smsa-agent`` with ``config`` (TOML text), returning once it writes its status."""
    path = work / "agent.toml"
    path.write_text(config)
    procs.start(name, ["smsa-agent", "--config", str(path)])
    procs.wait_ready(name, (work / "agent.status.json").exists)


def provision(
    api: HubApi, members: list[Member], *, gateway_out: dict[str, Any] | None = None
) -> str:
    """Providers, tariff, accounts, customers, the gateway and meters; the gateway's key (and,
    in ``gateway_out`` when given, everything ``POST /gateways`` answered: its MQTT password)."""
    for provider in PROVIDERS:
        api.post("/providers", provider)
    api.post("/tariffs", TARIFF)
    api.post("/accounts", SPONSOR)
    api.topup(SPONSOR["id"], SPONSOR_TOPUP)
    for m in members:
        body: dict[str, Any] = {"id": m.customer, "name": m.name, "protected": m.protected}
        if m.alternate:
            body["alternate_account"] = m.alternate
        if m.rules:
            body["credit_rules"] = m.rules
        api.post("/customers", body)
    gateway = api.post("/gateways", {"id": GATEWAY})
    if gateway_out is not None:
        gateway_out.update(gateway)
    for m in members:
        api.post(
            "/meters",
            {"id": m.meter, "gateway": GATEWAY, "customer": m.customer, "tariff": TARIFF["id"]},
        )
    return str(gateway["command_key"])


def agent_toml(
    broker_url: str, command_key: str, db: Path, buses: list[dict[str, Any]], members: list[Member]
) -> str:
    lines = [
        f'gateway_id = "{GATEWAY}"',
        "",
        "[mqtt]",
        f'url = "{broker_url}"',
        "",
        "[security]",
        f'command_key = "{command_key}"',
        "",
        "[storage]",
        f'path = "{db}"',
        "",
        "[timing]",
        "poll_interval_s = 0.5",
        "report_interval_s = 1.0",
        "",
    ]
    for bus in buses:
        lines.append("[[buses]]")
        lines += [f"{k} = {_toml(v)}" for k, v in bus.items()]
        lines.append("")
    for m in members:
        bus_name = "rs485" if m is SERIAL_MEMBER else "tcp0"
        lines += [
            "[[meters]]",
            f'id = "{m.meter}"',
            f'bus = "{bus_name}"',
            f"unit = {m.unit}",
            'model = "dds238-2-zn-sr"',
            "",
        ]
    return "\n".join(lines)


def _toml(value: Any) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


def create_key(work: Path, role: str, *, account: str | None = None) -> str:
    """A new API key of ``role`` (a customer's bound to ``account``) for the hub database in
    ``work``."""
    db = f"sqlite:///{work / 'hub.db'}"
    exe = Path(sys.executable).parent / "smsa-hub"
    bound = ["--account", account] if account else []
    result = subprocess.run(
        [str(exe), "create-key", "--role", role, "--db", db, *bound],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise DemoError(f"smsa-hub create-key failed: {result.stderr.strip()}")
    return result.stdout.strip()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False
