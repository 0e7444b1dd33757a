"""A gateway whose database is lost (issue 14, item 5), end to end.

Real processes: ``smsa-hub serve`` on a SQLite file, Mosquitto, the Modbus TCP meter simulator
and ``smsa-agent``. The agent runs and its records settle; it is stopped, its SQLite file
deleted, and started again: a new store, a new epoch, seqs from 1. The hub records a
``gateway_restarted`` event and tells the gateway where to resume; the meter's settled energy
then equals the simulator's register span exactly (nothing lost, nothing billed twice). A
disconnect captured as it was published before the wipe and published again after it does not
switch the relay: the agent refuses it for its epoch.
"""

import json
import sqlite3
from pathlib import Path

from demo.stack import GATEWAY, start_agent
from protocol.topics import topic
from tests.agent.helpers import publish
from tests.conftest import Broker
from tests.e2e.conftest import Recorder, System
from tests.e2e.test_delivery import (
    IVY,
    assert_charged_exactly,
    ivy_system,  # noqa: F401 (the fixture)
    stop_load_and_settle,
)
from tests.support import wait_for


def last_seq(system: System) -> int:
    return int(system.api.get(f"/meters/{IVY.meter}")["last_seq"] or 0)


def sent_seq(db: Path) -> int:
    """The highest seq the stopped agent handed to the broker (its later records die with it)."""
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT max(seq) FROM outbox WHERE kind = 'usage' AND sent = 1 AND meter = ?",
            (IVY.meter,),
        ).fetchone()
    return int(row[0] or 0)


def settled_wh(work: Path) -> int:
    with sqlite3.connect(work / "hub.db") as conn:
        row = conn.execute(
            "SELECT sum(import_end - import_start) FROM posted_usage WHERE meter_id = ?",
            (IVY.meter,),
        ).fetchone()
    return int(row[0])


def test_a_gateway_whose_store_is_lost_resumes_and_refuses_a_captured_command(
    ivy_system: tuple[System, Path, int],  # noqa: F811
    mosquitto: Broker,
) -> None:
    system, work, start_wh = ivy_system
    api = system.api
    commands = Recorder(mosquitto.port, topic(GATEWAY, "cmd"))
    try:
        commands.wait_subscribed()
        off = api.post(f"/meters/{IVY.meter}/disconnect", {"reason": "to be captured"})
        wait_for(lambda: not system.relay_on(IVY.unit), timeout=30)
        published = wait_for(lambda: [m for _, m in commands.since(0)
                                      if m.get("id") == off["command_id"]], timeout=10)  # fmt: skip
        captured = published[0]
        api.post(f"/meters/{IVY.meter}/reconnect", {"reason": "back on"})
        wait_for(lambda: system.relay_on(IVY.unit), timeout=30)
        before = last_seq(system)
        wait_for(lambda: last_seq(system) > before + 3, timeout=30)  # records settle

        system.procs.stop("agent")
        db = work / "agent.db"
        sent = sent_seq(db)
        wait_for(lambda: last_seq(system) >= sent, timeout=30)  # what it sent has arrived
        for path in (db, db.with_name("agent.db-wal"), db.with_name("agent.db-shm")):
            path.unlink(missing_ok=True)
        start_agent(system.procs, work, (work / "agent.toml").read_text(), name="agent-2")

        restarted = wait_for(lambda: system.events("gateway_restarted"), timeout=30)
        assert restarted[0]["data"]["resume"][IVY.meter] >= sent
        wait_for(lambda: last_seq(system) > restarted[0]["data"]["resume"][IVY.meter] + 2,
                 timeout=40)  # fmt: skip

        publish(mosquitto.port, topic(GATEWAY, "cmd"), json.dumps(captured).encode())
        refused = wait_for(lambda: [e for e in system.events("command_rejected")
                                    if e["data"].get("command") == off["command_id"]],
                           timeout=30)  # fmt: skip
        assert "epoch" in refused[0]["reason"], refused[0]
        assert refused[0]["data"].get("epoch_mismatch") is True
        assert system.relay_on(IVY.unit), "a disconnect captured before the wipe switched the relay"

        end_wh = stop_load_and_settle(system, work)
        assert settled_wh(work) == end_wh - start_wh, (settled_wh(work), start_wh, end_wh)
        assert_charged_exactly(system, start_wh, end_wh)
        assert not system.events("tamper"), system.events("tamper")
    finally:
        commands.close()
