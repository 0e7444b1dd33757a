"""Scheduled jobs run in one process of many on PostgreSQL (``hub.services.leader``): the
holder of the jobs lock; another takes over when the holder dies or loses its connection."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest

from hub.db import make_engine
from hub.services.leader import JOBS_NS, JobsLeader
from tests.hub.conftest import SHARED_DB, PgServer
from tests.support import free_port, port_open, stop, wait_for


@pytest.mark.postgres
def test_one_leader_and_a_takeover_when_its_connection_is_lost(pg_server: PgServer) -> None:
    engine = make_engine(pg_server.url(SHARED_DB))
    running: list[str] = []

    def leader(name: str) -> JobsLeader:
        return JobsLeader(engine, lambda: running.append(name), lambda: running.remove(name),
                          poll_s=0.05)  # fmt: skip

    leaders = {name: leader(name) for name in ("a", "b")}
    try:
        for leader in leaders.values():
            leader.open()
        wait_for(lambda: len(running) == 1)
        first = running[0]
        other = "b" if first == "a" else "a"
        dsn = f"host=127.0.0.1 port={pg_server.port} user={pg_server.user} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as admin:
            holder = admin.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s "
                "AND objid = 0 AND granted", (JOBS_NS,),
            ).fetchall()  # fmt: skip
            assert len(holder) == 1
            admin.execute("SELECT pg_terminate_backend(%s)", holder[0])
        wait_for(lambda: running == [other])
        assert leaders[first].leading is False
    finally:
        for leader in leaders.values():
            leader.close()
        engine.dispose()
    assert running == []


def _serve(db: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SMSA_HUB_MQTT": "", "SMSA_HUB_HTTP": f"127.0.0.1:{port}",
           "SMSA_HUB_DB": db}  # fmt: skip
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "hub", "serve"], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip


def _leading(port: int) -> bool:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return re.search(r"^smsa_jobs_leader 1\.0$", text, re.M) is not None


@pytest.mark.postgres
def test_two_hubs_run_the_jobs_once_and_the_other_takes_over_after_kill_9(
    pg_server: PgServer, tmp_path: Path
) -> None:
    pg_server.wipe(SHARED_DB)
    db = pg_server.url(SHARED_DB)
    ports = [free_port(), free_port()]
    procs = [_serve(db, p, tmp_path / f"hub{k}.log") for k, p in enumerate(ports)]
    try:
        wait_for(lambda: all(port_open(p) for p in ports), timeout=30)
        wait_for(lambda: any(_leading(p) for p in ports), timeout=30)
        leading = [k for k, p in enumerate(ports) if _leading(p)]
        assert len(leading) == 1
        holder = leading[0]
        os.kill(procs[holder].pid, signal.SIGKILL)
        procs[holder].wait(10)
        wait_for(lambda: _leading(ports[1 - holder]), timeout=30)
        logs = [(tmp_path / f"hub{k}.log").read_text() for k in range(2)]
        assert [log.count("runs the scheduled jobs") for log in logs] == [1, 1]
    finally:
        for proc in procs:
            stop(proc)
