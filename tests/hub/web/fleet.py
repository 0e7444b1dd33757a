"""A hub with a fleet: the API test world (``build_world``) plus N meters written in one
statement, a few disconnections and top-ups; for the dashboard's fleet-size tests and bench."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, insert

from hub.app import create_app
from hub.db import make_engine, migrate, write_tx
from hub.models import Event, Meter, MeterBus, table
from hub.settings import HubSettings
from tests.hub.api.conftest import Keys, build_world, new_key, serving

DISCONNECTED = 100  # every 100th meter is off, with a disconnect event a day ago


@dataclass
class Fleet:
    url: str
    http: httpx.Client
    keys: Keys
    engine: Engine
    size: int


def meter_id(i: int) -> str:
    return f"fm-{i:05d}"


@contextmanager
def fleet_hub(tmp_path: Path, size: int) -> Iterator[Fleet]:
    settings = HubSettings(db=f"sqlite:///{tmp_path / 'hub.db'}", mqtt="", sse_poll_s=0.05,
                           scheduler=False)  # fmt: skip
    engine = make_engine(settings.db)
    migrate(engine)
    try:
        with (
            serving(create_app(settings, engine)) as server,
            httpx.Client(base_url=server.url, timeout=30) as http,
        ):
            admin = new_key(engine, "admin")
            build_world(http, admin)
            keys = Keys(admin, new_key(engine, "operator"), new_key(engine, "customer", "c1"),
                        new_key(engine, "customer", "c2"))  # fmt: skip
            seed(engine, size)
            # top-ups of a customer without meters (credit control has nothing to re-evaluate)
            r = http.post("/api/v1/customers", json={"id": "payer", "name": "Pat"},
                          headers=keys.h("admin"))  # fmt: skip
            assert r.status_code == 201, r.text
            for n, amount in enumerate(("5.00", "7.50")):
                body = {"amount": amount, "reference": "cash"}
                headers = {**keys.h("admin"), "Idempotency-Key": f"fleet-{n}"}
                r = http.post("/api/v1/accounts/payer/topups", json=body, headers=headers)
                assert r.status_code == 201, r.text
            yield Fleet(server.url, http, keys, engine, size)
    finally:
        engine.dispose()


def seed(engine: Engine, size: int) -> None:
    now = datetime.now(UTC)
    meters = [{"id": meter_id(i), "gateway_id": "gw1", "customer_id": "c1" if i % 2 else "c2",
               "tariff_id": "t1", "service": "electricity", "timezone": "UTC",
               "relay": "off" if i % DISCONNECTED == 0 else "on", "online": i % 3 != 0,
               "import_wh": 1000 + i, "last_seq": 1, "created_at": now}
              for i in range(size)]  # fmt: skip
    events = [{"kind": "disconnect", "meter_id": meter_id(i), "reason": "credit exhausted",
               "at": now - timedelta(days=1), "data": {"by": "credit_control"}}
              for i in range(0, size, DISCONNECTED)]  # fmt: skip
    buses = [{"meter_id": meter_id(i), "reported_at": now, "requests": 500, "errors": 25,
              "timeouts": 20, "exceptions": 0, "connection": 5, "frame": 0, "polls": 480,
              "failed_polls": 4, "skipped": 9, "state": "failing", "last_error": "no answer"}
             for i in range(0, size, DISCONNECTED)]  # fmt: skip
    with write_tx(engine) as conn:
        conn.execute(insert(table(Meter)), meters)
        conn.execute(insert(table(Event)), events)
        conn.execute(insert(table(MeterBus)), buses)
