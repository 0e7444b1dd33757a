"""The durable command table on SQLite and PostgreSQL: supersede order, back-off, the agent's
word, expiry, and a gateway coming online (``hub.commands``)."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select, text, update

from hub.commands import store
from hub.commands.dispatcher import CommandDispatcher
from hub.control.commands import build_command
from hub.db import make_engine, read_tx, write_tx
from hub.models import Event, Gateway, table
from protocol.signing import new_key, verify
from tests.hub.conftest import SHARED_DB, PgServer

KEY = new_key()
T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def _gateway(engine: Engine, gateway: str = "gw-1") -> None:
    with write_tx(engine) as conn:
        conn.execute(insert(table(Gateway)).values(
            id=gateway, command_key=KEY, mqtt_username=gateway, mqtt_password_hash="x",
            created_at=T0))  # fmt: skip


def _queue(engine: Engine, action: str, at: datetime, meter: str = "m1", ttl_s: int = 600) -> str:
    command = build_command(KEY, meter, action, now=at, ttl=timedelta(seconds=ttl_s))
    with write_tx(engine) as conn:
        return store.enqueue(conn, "gw-1", command, now=at)


def _status(engine: Engine, meter: str = "m1") -> dict[str, str]:
    with read_tx(engine) as conn:
        return {r["id"]: str(r["status"]) for r in store.history(conn, meter)}


def test_a_newer_command_supersedes_an_older_open_one_of_its_group(engine: Engine) -> None:
    _gateway(engine)
    off = _queue(engine, "disconnect", T0)
    prompt = _queue(engine, "prompt", T0 + timedelta(seconds=1))
    on = _queue(engine, "reconnect", T0 + timedelta(seconds=2))
    assert _status(engine) == {off: "superseded", prompt: "queued", on: "queued"}
    with write_tx(engine) as conn:
        due = store.due(conn, T0 + timedelta(seconds=3))
    assert [d.id for d in due] == [prompt, on], "the stale disconnect is never sent"
    # an applied command is not superseded by a later one
    with write_tx(engine) as conn:
        assert store.settle(conn, "gw-1", on, applied=True, detail="applied", now=T0)
    later = _queue(engine, "disconnect", T0 + timedelta(seconds=4))
    assert _status(engine)[on] == "applied" and _status(engine)[later] == "queued"


def test_back_off_sent_and_the_agents_word(engine: Engine) -> None:
    _gateway(engine)
    _gateway(engine, "gw-2")
    cid = _queue(engine, "disconnect", T0)
    with write_tx(engine) as conn:
        assert len(store.due(conn, T0)) == 1
        assert store.due(conn, T0 + timedelta(seconds=29)) == []  # next try after 30 s
        assert len(store.due(conn, T0 + timedelta(seconds=31))) == 1
        assert store.due(conn, T0 + timedelta(seconds=80)) == []  # then 60 s
        store.mark_sent(conn, [cid], T0)
        # another gateway cannot settle it; a gateway coming online makes it due again
        assert not store.settle(conn, "gw-2", cid, applied=True, detail="forged", now=T0)
        store.wake_gateway(conn, "gw-1", T0 + timedelta(seconds=40))
        assert [d.id for d in store.due(conn, T0 + timedelta(seconds=40))] == [cid]
        assert store.settle(conn, "gw-1", cid, applied=False, detail="relay did not confirm",
                            now=T0)  # fmt: skip
    assert _status(engine) == {cid: "rejected"}


def test_an_expired_command_ends_expired_with_an_event_and_is_never_sent(engine: Engine) -> None:
    _gateway(engine)
    now = datetime.now(UTC)
    cid = _queue(engine, "disconnect", now - timedelta(seconds=700), ttl_s=600)
    sent: list[str] = []
    dispatcher = CommandDispatcher(engine, lambda _t, _p, i: sent.append(i) is None)
    assert dispatcher.step() == 0 and sent == []
    assert _status(engine) == {cid: "expired"}
    with read_tx(engine) as conn:
        events = conn.execute(select(table(Event))).all()
    assert [(e.kind, e.data["command_id"]) for e in events] == [("command_expired", cid)]
    with write_tx(engine) as conn:  # the agent cannot refuse it any more; it may say it applied
        assert not store.settle(conn, "gw-1", cid, applied=False, detail="expired", now=now)
        assert store.settle(conn, "gw-1", cid, applied=True, detail="applied", now=now)


def test_an_acknowledged_rotation_switches_the_key_and_resigns_what_is_queued(
    engine: Engine,
) -> None:
    _gateway(engine)
    new = new_key()
    off = _queue(engine, "disconnect", T0)  # signed with the old key, not yet sent
    rotate = build_command(KEY, "m2", "rotate", params={"command_key": new}, now=T0)
    gateways = table(Gateway)
    with write_tx(engine) as conn:
        rid = store.enqueue(conn, "gw-1", rotate, now=T0)
        conn.execute(update(gateways).values(next_command_key=new, next_mqtt_password_hash="y"))
    with write_tx(engine) as conn:  # before the ack: the old key still signs
        (due_off,) = [d for d in store.due(conn, T0) if d.id == off]
    assert verify(json.loads(due_off.payload), KEY)
    with write_tx(engine) as conn:
        assert store.settle(conn, "gw-1", rid, applied=True, detail="applied", now=T0)
    with read_tx(engine) as conn:
        row = conn.execute(select(gateways.c.command_key, gateways.c.next_command_key,
                                  gateways.c.mqtt_password_hash)).one()  # fmt: skip
        assert tuple(row) == (new, None, "y")
    with write_tx(engine) as conn:
        (due_off,) = [d for d in store.due(conn, T0 + timedelta(minutes=5)) if d.id == off]
    assert verify(json.loads(due_off.payload), new) and not verify(json.loads(due_off.payload), KEY)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_concurrent_writers_of_command_rows_never_deadlock(engine: Engine) -> None:
    """Superseding (the ingest coordinator), marking sent (the dispatcher), settling a batch's
    acknowledgements and expiring change many rows at once from different transactions, each
    wanting its rows in another order; on PostgreSQL they lock in id order, so none waits on
    another in a cycle (before, ``bench.fleet`` died of a deadlock between the first two)."""
    _gateway(engine)
    meters = [f"m{i:03d}" for i in range(120)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def commands(rnd: random.Random) -> list[tuple[str, dict[str, object]]]:
        at = datetime.now(UTC)
        return [("gw-1", build_command(KEY, m, "prompt", now=at, ttl=timedelta(minutes=5)))
                for m in rnd.sample(meters, 80)]  # fmt: skip

    def open_ids(rnd: random.Random) -> list[str]:
        with read_tx(engine) as conn:
            found = conn.execute(
                select(store.T_COMMANDS.c.id).where(
                    store.T_COMMANDS.c.status.in_(["queued", "sent"])
                )
            )
            ids = [str(i) for i in found.scalars()]
        rnd.shuffle(ids)
        return ids

    def supersede(rnd: random.Random) -> None:
        with write_tx(engine) as conn:
            store.enqueue_many(conn, commands(rnd))

    def sent(rnd: random.Random) -> None:
        ids = open_ids(rnd)
        with write_tx(engine) as conn:
            store.mark_sent(conn, ids, datetime.now(UTC))

    def acknowledged(rnd: random.Random) -> None:
        ids = open_ids(rnd)[:40]
        with write_tx(engine) as conn:
            store.lock_commands(conn, ids)
            for cid in ids:  # one by one, in the order the events came
                store.settle(conn, "gw-1", cid, applied=True, detail="", now=datetime.now(UTC))

    def run(work: Callable[[random.Random], None], seed: int) -> None:
        rnd = random.Random(seed)
        try:
            while not stop.is_set():
                work(rnd)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    with write_tx(engine) as conn:
        store.enqueue_many(conn, commands(random.Random(0)))
    threads = [threading.Thread(target=run, args=(w, n))
               for n, w in enumerate([supersede, supersede, sent, acknowledged])]  # fmt: skip
    for t in threads:
        t.start()
    stop.wait(4.0)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, f"{type(errors[0]).__name__}: {str(errors[0]).splitlines()[0]}"


def test_has_work_when_an_open_command_is_due_or_past_its_expiry(engine: Engine) -> None:
    """The dispatcher's question, from the open commands' earliest next try and expiry."""
    _gateway(engine)

    def has_work(at: datetime) -> bool:
        with read_tx(engine) as conn:
            return store.has_work(conn, at)

    assert not has_work(T0)
    command = _queue(engine, "prompt", T0, ttl_s=600)
    assert has_work(T0), "queued: due at once"
    with write_tx(engine) as conn:
        assert [d.id for d in store.due(conn, T0)] == [command]  # its next try is backed off
    assert not has_work(T0 + timedelta(seconds=1))
    assert has_work(T0 + timedelta(seconds=599)), "due again after the back-off"
    with write_tx(engine) as conn:
        assert store.settle(conn, "gw-1", command, applied=True, detail="applied", now=T0)
    assert not has_work(T0 + timedelta(days=1)), "applied: neither due nor expiring"


@pytest.mark.postgres
def test_has_work_reads_the_open_commands_index_with_stale_statistics(pg_server: PgServer) -> None:
    """Statistics gathered while every command was open (a fan-out) do not turn the question
    into a scan of the whole table once they are applied (migration 0920)."""
    pg_server.wipe(SHARED_DB)
    pg_engine = make_engine(pg_server.url(SHARED_DB))
    try:
        _stale_statistics(pg_engine)
    finally:
        pg_engine.dispose()


def _stale_statistics(pg_engine: Engine) -> None:
    _gateway(pg_engine)
    commands = [_queue(pg_engine, "prompt", T0, meter=f"m{i}") for i in range(300)]
    with pg_engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE commands")
    with write_tx(pg_engine) as conn:
        for command in commands:
            assert store.settle(conn, "gw-1", command, applied=True, detail="ok", now=T0)
        plan = "\n".join(r[0] for r in conn.execute(text("EXPLAIN " + str(
            store._NEXT_TIMES.compile(dialect=pg_engine.dialect)))))  # fmt: skip
        assert not store.has_work(conn, T0 + timedelta(days=1))
    assert "ix_commands_due" in plan and "ix_commands_expiring" in plan, plan
    assert "Seq Scan" not in plan, plan
