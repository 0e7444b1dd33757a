"""Offline top-up tokens end to end (contract section 7): a token vended at the hub and typed at
a gateway whose broker is down restores supply at once; when the broker returns the hub settles
it exactly once and the ledger check is ok; a cancelled token is refused and refunded once.

Real processes: ``smsa-hub serve`` on a SQLite file, Mosquitto (killed, then started again),
the Modbus TCP meter simulator and ``smsa-agent``, whose local token endpoint the CLI
``smsa-agent --config agent.toml token METER CODE`` reaches.
"""

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from demo.api import HubApi
from demo.procs import Processes
from demo.stack import agent_toml, provision, start_agent, start_hub, start_meter_sim
from demo.story import Member
from tests.agent.helpers import set_control
from tests.conftest import Broker
from tests.e2e.conftest import System, minor
from tests.support import free_port, wait_for

pytestmark = pytest.mark.slow

SPEED = 60  # 3600 W is 60 Wh a second: 1.5 cents a second on the demo tariff
IVY = Member("ivy", "Ivy", "m-ivy", 1, 3600, "", "")


def token_cli(work: Path, meter: str, code: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "smsa-agent"
    return subprocess.run([str(exe), "--config", str(work / "agent.toml"), "token", meter, code],
                          capture_output=True, text=True, timeout=30, check=False)  # fmt: skip


def agent_state(work: Path, meter: str) -> tuple[dict[str, Any] | None, int | None]:
    """The meter's credit state and local balance in the agent's own SQLite file."""
    conn = sqlite3.connect(f"file:{work / 'agent.db'}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT state, balance FROM credit_meter WHERE meter = ?", (meter,)
        ).fetchone()
    finally:
        conn.close()
    if row is None or row[0] is None:
        return None, None
    return json.loads(row[0]), row[1]


def tokens_of(work: Path, meter: str) -> dict[str, Any]:
    state, _ = agent_state(work, meter)
    return dict((state or {}).get("tokens") or {})


def vend(api: HubApi, amount: str) -> dict[str, Any]:
    return api.post("/accounts/ivy/tokens", {"amount": amount, "meter": IVY.meter},
                    **{"Idempotency-Key": uuid.uuid4().hex})  # fmt: skip


def assert_secret_not_logged(system: System, work: Path) -> None:
    """The meter's secret (from the hub's database) is in no process's log."""
    hub_db = sqlite3.connect(work / "hub.db")
    try:
        ((key, start),) = hub_db.execute("SELECT secret_key, starting_code FROM meter_token_keys")
    finally:
        hub_db.close()
    logs = "".join(p.read_text(errors="replace") for p in system.procs.logs.glob("*.log"))
    assert "token 2 applied" in logs  # the agent logged the redemption, without the secret
    assert key not in logs.lower() and str(start) not in logs


def cancelled_token_is_refunded_once_and_refused(ivy: System, work: Path) -> None:
    """A token cancelled before it is typed: refunded once, refused by the gateway."""
    api = ivy.api
    before = ivy.balance("ivy")
    second = vend(api, "1.00")
    cancelled = api.post(f"/tokens/{second['id']}/cancel", {})
    assert cancelled["status"] == "cancelled"
    assert api.post(f"/tokens/{second['id']}/cancel", {}) == cancelled
    assert ivy.balance("ivy") == before
    wait_for(lambda: tokens_of(work, IVY.meter).get("cancelled"), timeout=20)
    refused = token_cli(work, IVY.meter, second["token"])
    assert refused.returncode == 4 and "cancelled" in refused.stderr
    assert ivy.balance("ivy") == before


@pytest.fixture
def ivy(processes: Processes, tmp_path: Path, mosquitto: Broker) -> System:
    work = tmp_path / "work"
    work.mkdir()
    hub_url, admin_key = start_hub(processes, work, mosquitto.url)
    api = HubApi(hub_url, admin_key)
    command_key = provision(api, [IVY])
    api.topup("ivy", "2.15")
    sim_port = free_port()
    start_meter_sim(processes, "meter-sim", ["--tcp", f"127.0.0.1:{sim_port}"], [IVY], SPEED)
    buses = [{"name": "tcp0", "transport": "tcp", "host": "127.0.0.1", "port": sim_port}]
    config = agent_toml(mosquitto.url, command_key, work / "agent.db", buses, [IVY])
    start_agent(processes, work, config + f"\n[tokens]\nport = {free_port()}\n")
    modbus = ModbusTcpClient("127.0.0.1", port=sim_port, timeout=1.0, retries=0)
    return System(processes, api, hub_url, sim_port, mosquitto.url, [IVY], modbus)


def test_token_offline_restores_supply_settles_once_and_cancel_refunds(
    ivy: System, tmp_path: Path, mosquitto: Broker
) -> None:
    work, api = tmp_path / "work", ivy.api
    try:
        token = vend(api, "2.00")
        assert len(token["token"]) == 12
        wait_for(lambda: tokens_of(work, IVY.meter).get("sealed"), timeout=20)
        mosquitto.crash()
        # the 0.15 left runs out: the agent cuts the meter by its own rules, offline
        wait_for(lambda: not ivy.relay_on(IVY.unit), timeout=40)
        typed = token_cli(work, IVY.meter, token["token"])
        assert typed.returncode == 0, typed.stderr
        assert typed.stdout.count("\n") == 1 and "+200" in typed.stdout
        wait_for(lambda: ivy.relay_on(IVY.unit), timeout=15)  # supply back, no broker
        again = token_cli(work, IVY.meter, token["token"])
        assert again.returncode == 4 and "used" in again.stderr
        wrong = token_cli(work, IVY.meter, "123456789012")
        assert wrong.returncode == 4 and "invalid" in wrong.stderr

        mosquitto.start()
        wait_for(lambda: api.get(f"/tokens/{token['id']}")["status"] == "settled", timeout=60)
        set_control(ivy.modbus, IVY.unit, "load_w", 0)
        assert minor(api.get("/accounts/tokens:USD")["balance"]) == 0
        releases = [e for e in ivy.entries("ivy") if e["kind"] == "token"]
        assert sorted(minor(e["amount"]) for e in releases) == [-200, 200]  # vend, settle: once
        # the gateway stops adding the token once the hub's state holds it: no double credit
        wait_for(lambda: tokens_of(work, IVY.meter).get("settled"), timeout=20)
        end_wh = ivy.import_wh(IVY.unit)
        wait_for(lambda: api.get(f"/meters/{IVY.meter}")["import_wh"] == end_wh, timeout=60)
        wait_for(lambda: abs(agent_state(work, IVY.meter)[1] - ivy.balance("ivy")) <= 5,  # type: ignore[operator]
                 timeout=20)  # fmt: skip

        cancelled_token_is_refunded_once_and_refused(ivy, work)
        check = api.get("/ledger/check")
        assert check["ok"], check
        # the meter's secret is in no process's log
        hub_db = sqlite3.connect(work / "hub.db")
        try:
            ((key, start),) = hub_db.execute(
                "SELECT secret_key, starting_code FROM meter_token_keys"
            )
        finally:
            hub_db.close()
        logs = "".join(p.read_text(errors="replace") for p in ivy.procs.logs.glob("*.log"))
        assert "token applied" in logs or "token" in logs
        assert key not in logs.lower() and str(start) not in logs
    finally:
        ivy.procs.stop_all()
        ivy.modbus.close()
        api.close()
