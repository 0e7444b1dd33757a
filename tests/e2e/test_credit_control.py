"""Credit control end to end (issue 5): the hub (``smsa-hub serve`` on a SQLite file), a real
Mosquitto, the Modbus TCP meter simulator running fast and ``smsa-agent``, provisioned through
the HTTP API; the relay is read back from the simulator over Modbus.

Tariff: the demo's (0.25 USD/kWh, so 1 cent per 40 Wh). Meters draw 4000 W at speed 1800:
2000 Wh, i.e. 50 cents, per real second.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.procs import Processes
from demo.story import Member
from tests.conftest import Broker
from tests.e2e.conftest import System, minor, start_system
from tests.support import wait_for

pytestmark = pytest.mark.slow

SPEED = 1800
LOAD_W = 4000


def member(name: str, unit: int, rules: dict[str, Any]) -> Member:
    return Member(name, name.title(), f"m-{name}", unit, LOAD_W, "", "", rules=rules)


Start = Callable[[list[Member], dict[str, str]], System]


@pytest.fixture
def start(processes: Processes, tmp_path: Path, mosquitto: Broker) -> Iterator[Start]:
    """Start the whole system once for a test (members and their first top-ups)."""
    started: list[System] = []

    def go(members: list[Member], topups: dict[str, str]) -> System:
        work = tmp_path / "work"
        work.mkdir()
        system = start_system(processes, work, mosquitto.url, members, speed=SPEED, topups=topups)
        started.append(system)
        return system

    try:
        yield go
    finally:
        processes.stop_all()
        for system in started:
            system.modbus.close()
            system.api.close()


def settled(system: System, m: Member) -> bool:
    """The relay is off and the hub has every reading up to the simulator's register."""
    if system.relay_on(m.unit):
        return False
    hub = system.api.get(f"/meters/{m.meter}")
    return hub["import_wh"] == system.import_wh(m.unit)


def wait_below(system: System, customer: str, level: int, timeout: float = 30) -> int:
    """Wait until the hub's balance of ``customer`` is below ``level``; that balance."""
    seen: list[int] = []

    def below() -> bool:
        seen.append(system.balance(customer))
        return seen[-1] < level

    wait_for(below, timeout=timeout)
    return seen[-1]


def test_emergency_credit_cut_below_limit_then_repaid_and_reconnected(start: Start) -> None:
    emma = member("emma", 1, {"emergency_credit": 200, "reconnect_above": 100})
    system = start([emma], {"emma": "1.00"})

    # below zero: emergency credit taken, supply stays on
    balance = wait_below(system, "emma", 0)
    assert balance > -200, system.tails()
    assert system.relay_on(emma.unit), f"cut at {balance}, inside emergency credit"
    wait_for(lambda: system.events("emergency_credit", emma.meter), timeout=10)

    # cut off only below -200
    wait_for(lambda: not system.relay_on(emma.unit), timeout=30)
    wait_for(lambda: settled(system, emma), timeout=15)
    cut_balance = system.balance("emma")
    assert cut_balance < -200
    cuts = system.events("disconnect", emma.meter)
    assert cuts, system.tails()
    assert all(c["reason"] for c in cuts), cuts
    assert any((c["data"] or {}).get("rule") == "exhausted" for c in cuts), cuts
    assert "floor -200" in cuts[0]["reason"], cuts
    entries = system.entries("emma")
    assert sum(minor(e["amount"]) for e in entries) == cut_balance, entries

    # a top-up repays the emergency credit first, nets the rest and reconnects
    topup = system.api.topup("emma", "10.00")
    wait_for(lambda: system.relay_on(emma.unit), timeout=10)
    split = wait_for(lambda: system.events("debt_recovery"), timeout=10)[0]["data"]
    assert split["balance_before"] == cut_balance, split
    assert split["emergency_repaid"] == 200, split
    assert split["debt_recovered"] == -cut_balance - 200, split
    assert split["credit"] == 1000 + cut_balance, split
    assert split["emergency_repaid"] + split["debt_recovered"] + split["credit"] == 1000
    assert system.events("emergency_repaid"), "floor not restored"
    assert system.events("reconnect", emma.meter), system.tails()
    lines = {e["entry_id"]: e for e in system.entries("emma")}
    assert minor(lines[topup["id"]]["amount"]) == 1000
    assert minor(topup["balance"]) == cut_balance + 1000
    assert system.api.get("/ledger/check")["ok"]
