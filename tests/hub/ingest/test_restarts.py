"""Issue 14 item 5: a gateway whose store was lost starts its seqs over under a new epoch.

Through BatchProcessor over a real SQLite file: the first epoch heard is adopted; a new one (or a
former one announced again: a store restored from a backup) is a restart (a
``gateway_restarted`` event, the resume points stored, a signed ``resume`` command and a credit
state queued per meter the hub holds records of); the new store's records numbered before it
learnt where to resume are neither posted nor dropped as duplicates nor receipted; renumbered
above the resume point, with the bridge record, they are posted and the meter's energy equals
its register span; a late record of the old store is not posted (the bridge holds its energy).
Commands are published bound to the gateway's current epoch.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from hub.commands import store
from hub.control.commands import build_command
from hub.db import read_tx, write_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from protocol.messages import Command, ResumePoint
from protocol.signing import verify
from protocol.topics import topic
from tests.hub.ingest.helpers import records_for, table, usage
from tests.hub.seed import World

GW, M0, M1 = "gw-0", "gw-0-m0", "gw-0-m1"
OLD, NEW = "0123456789abcdef", "fedcba9876543210"
NOW = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)


def records(epoch: str, meter: str, recs: list[dict[str, Any]]) -> Inbound:
    body = usage([{**r, "meter": meter, "epoch": epoch} for r in recs])
    return Inbound(topic(GW, "usage"), body, NOW)


def status(epoch: str) -> Inbound:
    body = json.dumps({"v": 1, "state": "online", "epoch": epoch}).encode()
    return Inbound(topic(GW, "status"), body, NOW)


def rows(engine: Engine, name: str, *cols: str) -> list[tuple[Any, ...]]:
    t = table(name)
    with read_tx(engine) as conn:
        return [tuple(r) for r in conn.execute(select(*(t.c[c] for c in cols)))]


def energy(engine: Engine, meter: str) -> int:
    return sum(end - start for m, start, end in rows(engine, "posted_usage", "meter_id",
                                                         "import_start", "import_end")
               if m == meter)  # fmt: skip


def test_a_store_that_started_over_resumes_above_the_hub(
    sqlite_engine: Engine, world: World
) -> None:
    engine = sqlite_engine
    proc = BatchProcessor(engine, hold_s=0)
    old = records_for(M0, 5)
    out = proc.process([status(OLD), records(OLD, M0, old)], NOW)
    assert out.counts["posted"] == 5
    assert rows(engine, "gateways", "id", "epoch")[0] == (GW, OLD)
    assert not [k for (k,) in rows(engine, "events", "kind") if k == "gateway_restarted"]

    # the store is lost: seqs start over at 1 under a new epoch, the register went on
    top = old[-1]["import_end"]
    later = datetime.fromisoformat(old[-1]["end"]) + timedelta(hours=2)
    new = records_for(M0, 3, register=top + 500, t0=later)
    out = proc.process([status(NEW), records(NEW, M0, new)], NOW)
    assert out.counts["posted"] == 0 and out.counts["duplicates"] == 0
    assert out.counts["awaiting_resume"] == 3
    assert not out.settled.usage, "nothing of the new store is receipted: it keeps its records"
    restarted = [d for k, d in rows(engine, "events", "kind", "data") if k == "gateway_restarted"]
    assert len(restarted) == 1
    assert restarted[0]["epoch"] == NEW and restarted[0]["previous"] == OLD
    assert restarted[0]["resume"] == {M0: 5}  # gw-0-m1 posted nothing: nothing to resume
    assert dict(rows(engine, "gateways", "id", "epoch"))[GW] == NEW
    commands = {a: json.loads(p) for a, p in rows(engine, "commands", "action", "payload")}
    assert set(commands) == {"resume", "credit"}
    point = ResumePoint.model_validate(commands["resume"]["params"])
    assert point == ResumePoint(seq=5, import_end=top, end=datetime.fromisoformat(old[-1]["end"]))
    assert commands["credit"]["params"]["as_of_seq"] == 5

    # sent again before the gateway renumbered: still not dropped, not receipted
    out = proc.process([records(NEW, M0, new[1:2])], NOW)
    assert out.counts["awaiting_resume"] == 1 and not out.settled.usage

    # renumbered above 5, with the bridge at 6 from where seq 5 ended to where seq 1 starts
    bridge = {"seq": 6, "start": old[-1]["end"], "end": new[0]["start"], "import_start": top,
              "import_end": new[0]["import_start"]}  # fmt: skip
    moved = [{**r, "seq": r["seq"] + 6} for r in new]
    out = proc.process([records(NEW, M0, [bridge, *moved])], NOW)
    assert out.counts["posted"] == 4
    assert out.settled.usage[GW][NEW][M0] == {6, 7, 8, 9}
    assert energy(engine, M0) == new[-1]["import_end"] - old[0]["import_start"]

    # a late record of the old store (its energy is in the bridge): not posted, no restart
    late = [{**old[-1], "seq": 6}]
    out = proc.process([records(OLD, M0, late)], NOW)
    assert out.counts["stale_epoch"] == 1 and out.counts["posted"] == 0
    assert [k for (k,) in rows(engine, "events", "kind")].count("gateway_restarted") == 1

    # the old store restored from a backup announces itself: a restart back to it, above 9
    out = proc.process([status(OLD), records(OLD, M0, old[4:5])], NOW)
    assert out.counts["awaiting_resume"] == 1 and out.counts["posted"] == 0
    restarted = [d for k, d in rows(engine, "events", "kind", "data") if k == "gateway_restarted"]
    assert restarted[-1]["epoch"] == OLD and restarted[-1]["previous"] == NEW
    assert restarted[-1]["resume"] == {M0: 9}


def test_the_first_epoch_heard_is_adopted_and_a_new_processor_remembers(
    sqlite_engine: Engine, world: World
) -> None:
    engine = sqlite_engine
    BatchProcessor(engine, hold_s=0).process([records(OLD, M0, records_for(M0, 3))], NOW)
    assert dict(rows(engine, "gateway_epochs", "gateway_id", "epoch")) == {GW: OLD}
    again = BatchProcessor(engine, hold_s=0)  # a restarted hub: read from the tables
    out = again.process([status(OLD), records(OLD, M1, records_for(M1, 2))], NOW)
    assert out.counts["posted"] == 2
    assert "gateway_restarted" not in [k for (k,) in rows(engine, "events", "kind")]


def test_commands_are_published_bound_to_the_gateway_epoch(
    sqlite_engine: Engine, world: World
) -> None:
    engine = sqlite_engine
    key = world.gateways[GW]
    with write_tx(engine) as conn:
        store.enqueue(conn, GW, build_command(key, M0, "disconnect", now=NOW), NOW)
        unbound = store.due(conn, NOW + timedelta(seconds=1))
    assert "epoch" not in json.loads(unbound[0].payload)  # no epoch heard yet: as stored
    BatchProcessor(engine, hold_s=0).process([status(NEW)], NOW)
    with write_tx(engine) as conn:
        due = store.due(conn, NOW + timedelta(hours=1) - timedelta(seconds=1))
    sent = json.loads(due[0].payload)
    assert sent["epoch"] == NEW and verify(sent, key)
    assert Command.model_validate(sent).epoch == NEW


def test_a_refusal_for_the_epoch_leaves_the_command_open(
    sqlite_engine: Engine, world: World
) -> None:
    engine = sqlite_engine
    key = world.gateways[GW]
    with write_tx(engine) as conn:
        cid = store.enqueue(conn, GW, build_command(key, M0, "disconnect", now=NOW), NOW)

    def refusal(eid: str, **data: Any) -> Inbound:
        event = {"id": eid, "kind": "command_rejected", "at": NOW.isoformat(), "meter": M0,
                 "reason": "x", "data": {"command": cid, **data}}  # fmt: skip
        return Inbound(topic(GW, "events"), json.dumps({"v": 1, "events": [event]}).encode(), NOW)

    proc = BatchProcessor(engine, hold_s=0)
    proc.process([refusal("e1", epoch_mismatch=True)], NOW)
    assert rows(engine, "commands", "status") == [("queued",)]
    proc.process([refusal("e2")], NOW)
    assert rows(engine, "commands", "status") == [("rejected",)]
