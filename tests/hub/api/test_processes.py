"""Two API processes (``smsa-hub serve``) on one PostgreSQL database: an event written through
one reaches an event stream open on the other (woken by NOTIFY, ``hub.event_bell``, not by its
poll), and one top-up sent to both at once with one Idempotency-Key moves money once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from hub import keys
from hub.db import make_engine, run_tx
from tests.hub.api.helpers import ledger_state
from tests.hub.conftest import SHARED_DB, PgServer
from tests.hub.seed import seed_world
from tests.support import free_port, port_open, stop, wait_for

POLL_S = 10  # the streams' fallback poll (the most allowed): only NOTIFY brings an event sooner


def _serve(db: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SMSA_HUB_MQTT": "", "SMSA_HUB_HTTP": f"127.0.0.1:{port}",
           "SMSA_HUB_DB": db, "SMSA_HUB_SSE_POLL_S": str(POLL_S),
           "SMSA_HUB_SCHEDULER": "false"}  # fmt: skip
    with log.open("wb") as err:
        return subprocess.Popen([sys.executable, "-m", "hub", "serve"], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip


@pytest.fixture
def hubs(pg_server: PgServer, tmp_path: Path) -> Iterator[tuple[Engine, list[str], str]]:
    pg_server.wipe(SHARED_DB)
    db = pg_server.url(SHARED_DB)
    engine = make_engine(db)
    seed_world(engine, gateways=1, meters_per_gateway=1)
    _, admin = run_tx(engine, lambda s: keys.create_key(s, "admin", None))
    ports = [free_port(), free_port()]
    procs = [_serve(db, p, tmp_path / f"api{k}.log") for k, p in enumerate(ports)]
    try:
        wait_for(lambda: all(port_open(p) for p in ports), timeout=30)
        yield engine, [f"http://127.0.0.1:{p}" for p in ports], admin
    finally:
        for proc in procs:
            stop(proc)
        engine.dispose()


@pytest.mark.postgres
def test_an_event_written_through_one_process_reaches_a_stream_on_the_other(
    hubs: tuple[Engine, list[str], str],
) -> None:
    engine, (one, other), admin = hubs
    auth = {"Authorization": f"Bearer {admin}"}
    victims = [run_tx(engine, lambda s: keys.create_key(s, "operator", None))[0] for _ in "ab"]
    with (
        httpx.Client(base_url=other, timeout=POLL_S * 2) as http,
        http.stream("GET", "/api/v1/events/stream", headers=auth) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith("retry:")  # the stream is open from here
        took = []
        for victim in victims:  # the second one: while the stream waits after a read
            sent = time.monotonic()
            r = httpx.delete(f"{one}/api/v1/api-keys/{victim}", headers=auth)
            assert r.status_code == 204
            data = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
            took.append(time.monotonic() - sent)
            assert (data["kind"], data["data"]["api_key"]) == ("api_key_revoked", str(victim))
    assert took[1] < POLL_S / 2, took


@pytest.mark.postgres
def test_one_idempotent_topup_sent_to_both_processes_moves_money_once(
    hubs: tuple[Engine, list[str], str],
) -> None:
    engine, urls, admin = hubs
    headers = {"Authorization": f"Bearer {admin}", "Idempotency-Key": "both-1"}
    body = {"amount": "7.25", "reference": "two processes"}
    before, was = ledger_state(engine)

    def send(k: int) -> tuple[int, str]:
        r = httpx.post(f"{urls[k % 2]}/api/v1/accounts/c-0-0/topups", json=body,
                       headers=headers, timeout=30)  # fmt: skip
        return r.status_code, r.text

    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(send, range(10)))
    assert {status for status, _ in answers} == {201}, answers
    assert len({text for _, text in answers}) == 1
    entries, balances = ledger_state(engine)
    assert (entries - before, balances["c-0-0"] - was["c-0-0"]) == (1, 725)
