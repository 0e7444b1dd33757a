"""The dashboard's reads at fleet size: meter search and paging with a total, fleet counts,
disconnections and top-ups per day, and a meter's settled energy per day (posted through a
real ingest service and Mosquitto)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine

from hub.ingest.service import IngestService
from tests.conftest import Broker
from tests.hub.api.conftest import Keys
from tests.hub.ingest.helpers import publisher, records_for
from tests.hub.web.fleet import DISCONNECTED, fleet_hub, meter_id
from tests.support import wait_for


def test_meters_are_searched_and_paged_with_a_total(tmp_path: Path) -> None:
    with fleet_hub(tmp_path, 250) as fleet:
        op = fleet.keys.h("operator")
        r = fleet.http.get("/api/v1/meters", params={"limit": 100, "offset": 200}, headers=op)
        assert r.headers["X-Total-Count"] == "252"  # and the world's m1, m2
        assert [m["id"] for m in r.json()][:2] == [meter_id(200), meter_id(201)]
        assert len(r.json()) == 52
        r = fleet.http.get("/api/v1/meters", params={"q": "FM-0001"}, headers=op)
        assert r.headers["X-Total-Count"] == "10"
        assert {m["id"] for m in r.json()} == {meter_id(i) for i in range(10, 20)}
        r = fleet.http.get("/api/v1/meters", params={"q": "c1", "gateway": "gw1"}, headers=op)
        assert r.headers["X-Total-Count"] == str(125 + 1)  # odd meters and m1
        for wild in ("%", "_"):  # LIKE's wildcards are searched for, not matched by
            r = fleet.http.get("/api/v1/meters", params={"q": wild}, headers=op)
            assert r.headers["X-Total-Count"] == "0", wild

        summary = fleet.http.get("/api/v1/fleet/summary", headers=op).json()
        assert summary == {"meters": 252, "online": 166, "off": 250 // DISCONNECTED + 1}
        days = fleet.http.get("/api/v1/fleet/daily", params={"days": 7}, headers=op).json()
        today = datetime.now(UTC).date()
        assert [d["day"] for d in days] == [str(today - timedelta(days=6 - i)) for i in range(7)]
        assert days[-2]["disconnects"] == 250 // DISCONNECTED + 1  # seeded a day ago
        assert days[-1]["topups"] == 2 and days[-1]["topup_amount"] == "12.50"
        assert (
            fleet.http.get("/api/v1/fleet/summary", headers=fleet.keys.h("customer")).status_code
            == 403
        )


def test_a_meters_consumption_per_day_is_its_settled_energy(
    client: httpx.Client, keys: Keys, api_engine: Engine, mosquitto: Broker
) -> None:
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    records = records_for("m1", 3, t0=start, step_s=600)  # today, after the tariff's start
    records = [r for r in records if datetime.fromisoformat(r["end"]) <= datetime.now(UTC)]
    service = IngestService(api_engine, mosquitto.url, client_id="hub-use", batch_wait_s=0.02)
    service.start()
    try:
        assert service.wait_connected(10)
        with publisher(mosquitto.port) as pub:
            pub.usage("gw1", records)

            def today() -> int:
                r = client.get("/api/v1/meters/m1/consumption", params={"days": 2},
                               headers=keys.h("operator"))  # fmt: skip
                assert r.status_code == 200, r.text
                return int(r.json()[-1]["used"])

            used = sum(r["import_end"] - r["import_start"] for r in records)
            wait_for(lambda: today() == used)
    finally:
        service.stop()
    days = client.get("/api/v1/meters/m1/consumption", headers=keys.h("operator")).json()
    assert len(days) == 30 and sum(d["used"] for d in days) == used
    assert (
        client.get("/api/v1/meters/zz/consumption", headers=keys.h("operator")).status_code == 404
    )
