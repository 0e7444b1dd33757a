"""kill -9 of the hub while batches are in flight, then a restart: no record lost, none posted
twice (messages are acknowledged to the broker only after their batch commits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub.db import read_tx
from hub.ledger import check_invariants
from tests.conftest import Broker
from tests.hub.ingest.helpers import posted, publisher, records_for
from tests.hub.seed import World
from tests.support import stop, wait_for

N_PER_METER = 1000


def _runner(db: str, broker: Broker, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = (tmp_path / f"{name}.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.ingest.runner", "--db", db, "--mqtt", broker.url,
         "--client-id", "hub-crash", "--batch-size", "40", "--batch-wait", "0.01"],
        stdout=subprocess.PIPE, stderr=log,
    )  # fmt: skip
    log.close()
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != b"ready":
        stop(proc)
        pytest.fail(f"runner did not start: {line!r}, see {tmp_path / f'{name}.log'}")
    return proc


@pytest.mark.slow
def test_kill_9_mid_batch_loses_nothing_and_posts_nothing_twice(
    sqlite_engine: Engine, world: World, mosquitto: Broker, tmp_path: Path
) -> None:
    db = str(sqlite_engine.url)
    records = {m: records_for(m, N_PER_METER) for m in world.meters}
    total = N_PER_METER * len(records)
    hub = _runner(db, mosquitto, tmp_path, "first")
    try:
        with publisher(mosquitto.port) as pub:
            sent = [
                pub.client.publish(f"smsa/v1/gw/{gateway}/usage", _one(records[meter][i]), qos=1)
                for i in range(N_PER_METER)
                for meter, gateway in world.meters.items()
            ]
            wait_for(lambda: posted(sqlite_engine) > 0, timeout=60, interval=0.005)
            os.kill(hub.pid, signal.SIGKILL)
            hub.wait(10)
            at_kill = posted(sqlite_engine)
            assert 0 < at_kill < total, "the kill must land while records are still arriving"
            for info in sent:  # every record is with the broker, queued for the hub's session
                info.wait_for_publish(10)
        hub = _runner(db, mosquitto, tmp_path, "second")
        wait_for(lambda: posted(sqlite_engine) == total, timeout=90)
    finally:
        stop(hub)
    with read_tx(sqlite_engine) as conn:
        report = check_invariants(conn)
    assert report["ok"], report
    assert report["checks"]["usage_once"]["ok"]
    assert posted(sqlite_engine) == total


def _one(record: dict[str, object]) -> bytes:
    return json.dumps({"v": 1, "records": [record]}).encode()
