"""Several hub processes in one ingest group (``hub.ingest.group``) on PostgreSQL, fed by one
MQTT 5 shared subscription that spreads every gateway's records over all of them; one member
killed with kill -9 mid-run and a new one started in its place: every record posted once, the
ledger's invariants hold, and the energy posted equals the energy published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.db import make_engine, read_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.ledger import check_invariants
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.conftest import SHARED_DB, PgServer
from tests.hub.ingest.helpers import posted, publisher, records_for, table, usage
from tests.hub.seed import seed_world
from tests.support import stop, wait_for

N_PER_METER = 100


@pytest.mark.postgres
@pytest.mark.parametrize("shared", [True, False])
def test_a_member_rates_from_what_another_member_committed(
    shared: bool, pg_server: PgServer
) -> None:
    """Member A settles seq 1, member B seq 2, then A seq 3: A must rate it after seq 2 (read
    under the gateway's lock), not hold it for a seq 2 it remembers as missing (a processor
    alone trusts the states it cached, which is what this shows)."""
    pg_server.wipe(SHARED_DB)
    engine = make_engine(pg_server.url(SHARED_DB))
    try:
        world = seed_world(engine, gateways=1, meters_per_gateway=1)
        ((meter, gateway),) = world.meters.items()
        one, two, three = records_for(meter, 3)
        a, b = BatchProcessor(engine, shared=shared), BatchProcessor(engine, shared=shared)

        def settle(processor: BatchProcessor, record: dict[str, object]) -> dict[str, int]:
            now = datetime.now(UTC)
            return dict(processor.process([Inbound(topic(gateway, "usage"), usage([record]),
                                                   now)]).counts)  # fmt: skip

        assert settle(a, one)["posted"] == 1
        assert settle(b, two)["posted"] == 1
        third = settle(a, three)
        assert (third.get("posted", 0), third.get("held", 0)) == ((1, 0) if shared else (0, 1))
    finally:
        engine.dispose()


def _member(db: str, broker: Broker, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.ingest.runner", "--db", db, "--mqtt", broker.url,
         "--group", "g", "--workers", "1", "--batch-size", "40", "--batch-wait", "0.01"],
        stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        stop(proc)
        pytest.fail(f"member did not start: {line!r}, see {tmp_path / f'{name}.log'}")
    return proc


@pytest.mark.postgres
@pytest.mark.parametrize("members", [2, 3])
def test_a_group_posts_every_record_once_across_a_kill_9(
    members: int, pg_server: PgServer, mosquitto: Broker, tmp_path: Path
) -> None:
    pg_server.wipe(SHARED_DB)
    db = pg_server.url(SHARED_DB)
    engine = make_engine(db)
    world = seed_world(engine, gateways=3, meters_per_gateway=2)
    records = {m: records_for(m, N_PER_METER) for m in world.meters}
    total = N_PER_METER * len(records)
    energy = sum(r["import_end"] - r["import_start"] for rs in records.values() for r in rs)
    procs = [_member(db, mosquitto, tmp_path, f"m{k}") for k in range(members)]
    try:
        with publisher(mosquitto.port) as pub:
            sent = [
                pub.client.publish(f"smsa/v1/gw/{gateway}/usage", usage([records[meter][i]]), qos=1)
                for i in range(N_PER_METER)
                for meter, gateway in world.meters.items()
            ]
            wait_for(lambda: posted(engine) > total // 10, timeout=60, interval=0.005)
            victim = procs.pop(members // 2)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            at_kill = posted(engine)
            assert at_kill < total, "the kill must land while records are still arriving"
            for info in sent:
                info.wait_for_publish(20)
        procs.append(_member(db, mosquitto, tmp_path, "replacement"))  # takes the free slot
        wait_for(lambda: posted(engine) == total, timeout=120)
    finally:
        for proc in procs:
            stop(proc)
    pu = table("posted_usage")
    with read_tx(engine) as conn:
        report = check_invariants(conn)
        rows, keys, wh = conn.execute(
            select(func.count(), func.count(func.distinct(pu.c.meter_id + ":" + func.cast(
                pu.c.seq, table("meters").c.id.type))),
                   func.sum(pu.c.import_end - pu.c.import_start))
        ).one()  # fmt: skip
    engine.dispose()
    assert report["ok"], report
    assert (rows, keys, wh) == (total, total, energy)
