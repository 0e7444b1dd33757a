"""The bypass suspicion end to end (issue 19): the simulator's frozen register (current flows,
the energy register stands still) read by ``smsa-agent`` over Modbus TCP, the interval's mean
current carried in the usage records (``current_mean_a``) through Mosquitto to ``smsa-hub
serve``, which stores it with the posted usage; the customer's insights then raise
``bypass_suspected`` with its evidence, and nothing for a clean meter on the same run.

The agent's clock is real time (intervals of 1 s), so the hub is told a bypass lasts 3 s
(``SMSA_HUB_INSIGHTS_BYPASS_MIN_S``) instead of an hour. Meters draw 2000 W at speed 120:
about 67 Wh a real second, so a clean 1 s interval always moves the DDS238's 10 Wh register.
"""

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.procs import Processes
from demo.story import Member
from firmware_sim.control import field as control_field
from tests.conftest import Broker
from tests.e2e.conftest import System, start_system
from tests.support import wait_for

pytestmark = pytest.mark.slow

SPEED = 120
LOAD_W = 2000
BYPASS_S = 3
FROZEN = Member("frozen", "Frozen", "m-frozen", 1, LOAD_W, "", "")
CLEAN = Member("clean", "Clean", "m-clean", 2, LOAD_W, "", "")


@pytest.fixture
def system(processes: Processes, tmp_path: Path, mosquitto: Broker) -> Iterator[System]:
    work = tmp_path / "work"
    work.mkdir()
    started = start_system(
        processes, work, mosquitto.url, [FROZEN, CLEAN], speed=SPEED,
        topups={"frozen": "50.00", "clean": "50.00"},
        hub_env={"SMSA_HUB_INSIGHTS_BYPASS_MIN_S": str(BYPASS_S)},
    )  # fmt: skip
    try:
        yield started
    finally:
        processes.stop_all()
        started.modbus.close()
        started.api.close()


def freeze(system: System, unit: int) -> None:
    """The simulator's frozen-register tamper (control block 0x9016) on ``unit``."""
    if not system.modbus.connected:
        system.modbus.connect()
    address = control_field("tamper_stuck").address
    result = system.modbus.write_registers(address, [1], device_id=unit)
    assert not result.isError(), f"freezing unit {unit}: {result}"


def anomalies(system: System, customer: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = system.api.get(f"/customers/{customer}/insights")["anomalies"]
    return found


def records_with_current(db: Path, meter: str, at_least: float) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM posted_usage WHERE meter_id = ? AND current_mean_a >= ?",
            (meter, at_least),
        ).fetchone()
    return int(count)


def test_a_frozen_register_is_a_bypass_suspicion_and_a_clean_meter_is_not(
    system: System, tmp_path: Path
) -> None:
    db = tmp_path / "work" / "hub.db"
    amps = LOAD_W / (230 * 0.95)  # the simulator's current at its nominal voltage and pf 0.95
    # the agent reports the current it reads: both meters' records carry it
    for meter in ("m-frozen", "m-clean"):
        wait_for(lambda m=meter: records_with_current(db, m, amps * 0.95) >= 3, timeout=20)

    freeze(system, FROZEN.unit)
    frozen_at = system.import_wh(FROZEN.unit)
    wait_for(lambda: any(a["kind"] == "bypass_suspected" for a in anomalies(system, "frozen")),
             timeout=30, interval=0.5)  # fmt: skip
    assert system.import_wh(FROZEN.unit) == frozen_at  # the register stood still all along

    (found,) = [a for a in anomalies(system, "frozen") if a["kind"] == "bypass_suspected"]
    assert found["meter"] == "m-frozen" and found["severity"] == "high"
    evidence = found["evidence"]
    assert evidence["register"] == frozen_at
    assert abs(evidence["mean_current_a"] - amps) < 0.05 * amps
    assert evidence["to"] > evidence["from"]
    # raised once as an operator event, with its evidence
    (event,) = system.events("anomaly", "m-frozen")
    assert event["data"]["anomaly"] == "bypass_suspected"
    assert event["data"]["severity"] == "high" and event["data"]["register"] == frozen_at
    assert abs(event["data"]["mean_current_a"] - amps) < 0.05 * amps

    # the clean meter ran as long, its current reported, and raises nothing
    assert records_with_current(db, "m-clean", amps * 0.95) >= 2 * BYPASS_S
    assert anomalies(system, "clean") == []
    assert system.events("anomaly", "m-clean") == []
