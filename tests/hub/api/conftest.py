"""API test fixtures: a real migrated SQLite file, the app under a real uvicorn on a free port
(in a thread), keys for every role, and a small world of parties and meters."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from hub.app import create_app
from hub.db import make_engine, migrate, run_tx
from hub.keys import create_key
from hub.settings import HubSettings
from tests.support import free_port, wait_for

PAYMENT_SECRET = "test-payment-secret"
# The role tests try wrong keys on every endpoint from one address; the failure limiter
# (hub.api.ratelimit) has tests of its own with the default-sized bucket.
ROLE_TESTS_FAILURES = 1000


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per session; tests copy it (saves the migration)."""
    path = tmp_path_factory.mktemp("template") / "hub.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
    finally:
        engine.dispose()
    with closing(sqlite3.connect(path)) as conn:  # fold the WAL into the file before copies
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture
def api_settings(tmp_path: Path, migrated_sqlite: Path) -> HubSettings:
    shutil.copyfile(migrated_sqlite, tmp_path / "hub.db")
    return HubSettings(
        db=f"sqlite:///{tmp_path / 'hub.db'}",
        mqtt="",
        currency="USD",
        max_topup="500.00",
        payment_secrets={"mpesa": PAYMENT_SECRET},
        sse_poll_s=0.05,
        scheduler=False,
        auth_failure_burst=ROLE_TESTS_FAILURES,
    )


@pytest.fixture
def api_engine(api_settings: HubSettings) -> Iterator[Engine]:
    engine = make_engine(api_settings.db)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def app(api_settings: HubSettings, api_engine: Engine) -> FastAPI:
    return create_app(api_settings, api_engine)


@dataclass
class Keys:
    admin: str
    operator: str
    customer: str  # bound to account c1
    other: str  # bound to account c2

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


def new_key(engine: Engine, role: str, account: str | None = None) -> str:
    return run_tx(engine, lambda s: create_key(s, role, account))[1]


def build_world(client: httpx.Client, admin: str) -> None:
    """Providers, a tariff, two customers (c1, c2) with a sponsor, a gateway and two meters."""
    h = {"Authorization": f"Bearer {admin}"}
    calls: list[tuple[str, dict[str, object]]] = [
        ("/api/v1/providers", {"id": "gen", "name": "Generator", "tier": "generation"}),
        ("/api/v1/providers", {"id": "ret", "name": "Retailer", "tier": "retail"}),
        (
            "/api/v1/tariffs",
            {
                "id": "t1",
                "currency": "USD",
                "components": [
                    {"provider": "gen", "per_kwh": "0.10"},
                    {"provider": "ret", "per_kwh": "0.05"},
                ],
            },
        ),
        ("/api/v1/accounts", {"id": "sponsor", "name": "Sponsor"}),
        ("/api/v1/customers", {"id": "c1", "name": "Ada", "alternate_account": "sponsor"}),
        ("/api/v1/customers", {"id": "c2", "name": "Bob"}),
    ]
    for path, body in calls:
        r = client.post(path, json=body, headers=h)
        assert r.status_code == 201, (path, r.text)
    r = client.post("/api/v1/gateways", json={"id": "gw1"}, headers=h)
    assert r.status_code == 201, r.text
    for meter, customer in (("m1", "c1"), ("m2", "c2")):
        body = {"id": meter, "gateway": "gw1", "customer": customer, "tariff": "t1"}
        r = client.post("/api/v1/meters", json=body, headers=h)
        assert r.status_code == 201, r.text


@pytest.fixture
def keys(client: httpx.Client, api_engine: Engine) -> Keys:
    admin = new_key(api_engine, "admin")
    build_world(client, admin)
    return Keys(
        admin=admin,
        operator=new_key(api_engine, "operator"),
        customer=new_key(api_engine, "customer", "c1"),
        other=new_key(api_engine, "customer", "c2"),
    )


@dataclass
class LiveServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread


@pytest.fixture
def live_server(app: FastAPI) -> Iterator[LiveServer]:
    """The app under a real uvicorn on 127.0.0.1 and a free port, in a thread."""
    with serving(app) as server:
        yield server


@contextmanager
def serving(app: FastAPI) -> Iterator[LiveServer]:
    """Run ``app`` under a real uvicorn on 127.0.0.1 and a free port, in a thread, until exit."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10)
        yield LiveServer(f"http://127.0.0.1:{port}", server, thread)
    finally:
        app.state.hub.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client of the live server (base URL set, no key)."""
    with httpx.Client(base_url=live_server.url, timeout=10) as http:
        yield http


@dataclass
class Shared:
    """One server, database and world for a whole module: for tests that only compare the
    ledger before and after, and create unique ids."""

    client: httpx.Client
    keys: Keys
    engine: Engine


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, migrated_sqlite: Path) -> Iterator[Shared]:
    path = tmp_path_factory.mktemp("shared") / "hub.db"
    shutil.copyfile(migrated_sqlite, path)
    settings = HubSettings(
        db=f"sqlite:///{path}",
        mqtt="",
        max_topup="500.00",
        payment_secrets={"mpesa": PAYMENT_SECRET},
        sse_poll_s=0.05,
        scheduler=False,
        auth_failure_burst=ROLE_TESTS_FAILURES,
    )
    engine = make_engine(settings.db)
    app = create_app(settings, engine)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=server.run, name="uvicorn-shared", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=10)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            admin = new_key(engine, "admin")
            build_world(http, admin)
            keys = Keys(
                admin=admin,
                operator=new_key(engine, "operator"),
                customer=new_key(engine, "customer", "c1"),
                other=new_key(engine, "customer", "c2"),
            )
            yield Shared(http, keys, engine)
    finally:
        app.state.hub.stopping.set()
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()
