"""The API on PostgreSQL: the world, 20 concurrent identical top-ups (row locks instead of
SQLite's write lock) moving money once, a payment replay refused, invariants holding."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import uvicorn

from hub.app import create_app
from hub.db import make_engine, migrate
from hub.services.payments import signature
from hub.settings import HubSettings
from tests.hub.api.conftest import PAYMENT_SECRET, build_world, new_key
from tests.hub.api.helpers import ledger_state
from tests.hub.conftest import PgServer
from tests.support import free_port, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_hub(pg_server: PgServer) -> Iterator[tuple[str, Any]]:
    url = pg_server.url(pg_server.create_database())
    migrate(url)
    settings = HubSettings(db=url, mqtt="", payment_secrets={"mpesa": PAYMENT_SECRET})
    engine = make_engine(url)
    app = create_app(settings, engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="uvicorn-pg", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10)
        yield f"http://127.0.0.1:{port}", engine
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def test_api_on_postgres(pg_hub: tuple[str, Any]) -> None:
    url, engine = pg_hub
    admin = new_key(engine, "admin")
    with httpx.Client(base_url=url, timeout=30) as http:
        build_world(http, admin)
        headers = {"Authorization": f"Bearer {admin}", "Idempotency-Key": "pg-burst"}
        body = {"amount": "3.33", "reference": "burst"}

        def send(_: int) -> tuple[int, str]:
            with httpx.Client(base_url=url, timeout=30) as one:
                r = one.post("/api/v1/accounts/c1/topups", json=body, headers=headers)
                return r.status_code, r.text

        before, _ = ledger_state(engine)
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(send, range(20)))
        assert {s for s, _ in answers} == {201}, answers
        assert len({t for _, t in answers}) == 1
        entries, balances = ledger_state(engine)
        assert (entries, balances["c1"]) == (before + 1, 333)

        answers = []
        for account in ("c1", "c1", "c2"):  # paid, the provider's retry, another account
            raw = json.dumps({"transaction_id": "PG1", "account": account,
                              "amount": "1.00"}).encode()  # fmt: skip
            stamp = str(int(time.time()))
            sig = signature(PAYMENT_SECRET, stamp, raw)
            r = http.post("/api/v1/payments/callback/mpesa", content=raw,
                          headers={"X-Timestamp": stamp, "X-Signature": sig})  # fmt: skip
            answers.append((r.status_code, r.json()))
        assert [s for s, _ in answers] == [201, 201, 409], answers
        assert answers[0][1] == answers[1][1]
        h = {"Authorization": f"Bearer {admin}"}
        assert http.get("/api/v1/accounts/c1", headers=h).json()["balance"] == "4.33"
        assert http.get("/api/v1/ledger/check", headers=h).json()["ok"] is True
        assert http.post("/api/v1/customers", json={"id": "c1", "name": "x"},
                         headers=h).status_code == 409  # fmt: skip
