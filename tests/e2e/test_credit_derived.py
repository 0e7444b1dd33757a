"""The agent works its balance out alone (``hub.commands.baseline``): with nothing but its own
usage moving the balance, the hub sends no credit state after usage, and the agent's local
balance still equals the hub's to the minor unit; a top-up is followed by a state at once.

Real processes: ``smsa-hub serve`` on a SQLite file, Mosquitto, the Modbus TCP meter simulator
and ``smsa-agent``.
"""

import sqlite3
from pathlib import Path

import pytest

from demo.procs import Processes
from demo.story import Member
from tests.agent.helpers import set_control
from tests.conftest import Broker
from tests.e2e.conftest import System, start_system
from tests.e2e.test_tokens import agent_state
from tests.support import wait_for

pytestmark = pytest.mark.slow

SPEED = 60  # 3600 W is 60 Wh a second
JO = Member("jo", "Jo", "m-jo", 1, 3600, "", "")
RECORDS = 12  # usage records posted while the meter runs (the agent reports every second)


def _count(work: Path, sql: str, meter: str) -> int:
    conn = sqlite3.connect(f"file:{work / 'hub.db'}?mode=ro", uri=True, timeout=5)
    try:
        ((n,),) = conn.execute(sql, (meter,))
    finally:
        conn.close()
    return int(n)


def credit_states(work: Path, meter: str) -> int:
    sql = "SELECT count(*) FROM commands WHERE meter_id = ? AND action = 'credit'"
    return _count(work, sql, meter)


def posted(work: Path, meter: str) -> int:
    return _count(work, "SELECT count(*) FROM posted_usage WHERE meter_id = ?", meter)


def in_step(system: System, work: Path) -> bool:
    """The agent's local balance is the hub's (read hub, agent, hub: no record posted between)."""
    hub = system.balance(JO.customer)
    _, local = agent_state(work, JO.meter)
    return local == hub == system.balance(JO.customer)


def test_agent_derives_its_balance_without_a_state_after_usage(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    system = start_system(processes, work, mosquitto.url, [JO], speed=SPEED,
                          topups={JO.customer: "20.00"})  # fmt: skip
    try:
        wait_for(lambda: posted(work, JO.meter) >= RECORDS, timeout=60)
        set_control(system.modbus, JO.unit, "load_w", 0)  # the balance stops moving
        wait_for(lambda: in_step(system, work), timeout=30)
        # the top-up's state, and at most one after the first usage (a state may have been
        # queued before the top-up's reached the table): none after the meter's own records
        sent = credit_states(work, JO.meter)
        assert sent <= 2, f"{sent} credit states for {posted(work, JO.meter)} records"
        assert system.balance(JO.customer) < 2000  # usage was charged meanwhile
        # a top-up moves the balance beside the usage: its state reaches the agent
        before = system.balance(JO.customer)
        system.api.topup(JO.customer, "5.00")
        wait_for(lambda: in_step(system, work) and system.balance(JO.customer) == before + 500,
                 timeout=30)  # fmt: skip
        assert credit_states(work, JO.meter) == sent + 1
    finally:
        system.modbus.close()
        system.api.close()
