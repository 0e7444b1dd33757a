"""The ingest service's processes: the MQTT pump (hub.ingest.transport.pump) or a settler
(hub.ingest.settler) killed with -9 while records stream in is started again and every record
is posted exactly once; none of them outlives its hub."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from hub.db import read_tx
from hub.ingest import IngestService
from hub.ledger import check_invariants
from tests.conftest import Broker
from tests.hub.ingest.helpers import posted, publisher, records_for, usage
from tests.hub.seed import World
from tests.support import stop, wait_for

N_PER_METER = 1000


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purpose
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("victim", ["pump", "settler"])
def test_a_killed_process_is_restarted_and_nothing_is_lost_or_doubled(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
    victim: str,
) -> None:
    service = start_service(sqlite_engine, batch_size=40)
    pids = [service.pump_pid] if victim == "pump" else service.settler_pids
    first = pids[0]
    assert first is not None
    records = {m: records_for(m, N_PER_METER) for m in world.meters}
    total = N_PER_METER * len(records)
    with publisher(mosquitto.port) as pub:
        sent = [
            pub.client.publish(f"smsa/v1/gw/{gateway}/usage", usage([records[meter][i]]), qos=1)
            for i in range(N_PER_METER)
            for meter, gateway in world.meters.items()
        ]
        wait_for(lambda: posted(sqlite_engine) > 0, timeout=30, interval=0.005)
        os.kill(first, signal.SIGKILL)
        at_kill = posted(sqlite_engine)
        assert at_kill < total, "the kill must land while records are still arriving"
        for info in sent:
            info.wait_for_publish(10)
    restarted = (
        (lambda: service.pump_pid) if victim == "pump" else (lambda: service.settler_pids[0])
    )
    wait_for(lambda: restarted() not in (None, first), timeout=15)
    wait_for(lambda: posted(sqlite_engine) == total, timeout=60)
    with read_tx(sqlite_engine) as conn:
        report = check_invariants(conn)
    assert report["ok"], report
    assert report["checks"]["usage_once"]["ok"]


def test_the_pump_and_settlers_exit_when_their_hub_is_killed(
    sqlite_engine: Engine, world: World, mosquitto: Broker, tmp_path: Path
) -> None:
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.ingest.runner", "--db", str(sqlite_engine.url), "--mqtt",
         mosquitto.url, "--client-id", "hub-orphan"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert hub.stdout is not None and hub.stdout.readline().strip() == b"ready"
        children = [
            int(c) for c in Path(f"/proc/{hub.pid}/task/{hub.pid}/children").read_text().split()
        ]
        assert len(children) == 3, children  # the pump and two settlers
        os.kill(hub.pid, signal.SIGKILL)
        hub.wait(10)
        wait_for(lambda: not any(_alive(c) for c in children), timeout=10)
    finally:
        stop(hub)
