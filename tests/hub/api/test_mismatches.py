"""An operator sees where a gateway priced a record differently from the hub (issue 15):
``GET /meters/{id}/mismatches``, fed by a real ingest service through Mosquitto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine

from hub.ingest.service import IngestService
from tests.conftest import Broker
from tests.hub.api.conftest import Keys
from tests.hub.ingest.helpers import publisher, records_for
from tests.support import wait_for


def test_operator_reads_a_meters_pricing_mismatches(
    client: httpx.Client, keys: Keys, api_engine: Engine, mosquitto: Broker
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # the tariff in force
    ours, theirs = records_for("m1", 2, t0=t0, step_s=60)
    ours["shares"] = {}  # no shares: nothing to compare
    theirs["shares"] = {"gen": 999, "ret": 1}  # a gateway on a stale or tampered tariff
    service = IngestService(api_engine, mosquitto.url, client_id="hub-mm", batch_wait_s=0.02)
    service.start()
    try:
        assert service.wait_connected(10)
        with publisher(mosquitto.port) as pub:
            pub.usage("gw1", [ours, theirs])

            def found() -> list[dict[str, object]]:
                r = client.get("/api/v1/meters/m1/mismatches", headers=keys.h("operator"))
                assert r.status_code == 200, r.text
                return list(r.json())

            (row,) = wait_for(found)
    finally:
        service.stop()
    used = theirs["import_end"] - theirs["import_start"]  # Wh at 0.10 + 0.05 per kWh
    assert row["seq"] == 2
    assert row["agent_shares"] == {"gen": "9.99", "ret": "0.01"}
    hub = {p: round(float(v) * 100) for p, v in row["hub_shares"].items()}
    assert abs(hub["gen"] - used * 0.010) <= 1 and abs(hub["ret"] - used * 0.005) <= 1
    assert client.get("/api/v1/meters/m2/mismatches", headers=keys.h("operator")).json() == []
    assert (
        client.get("/api/v1/meters/nope/mismatches", headers=keys.h("operator")).status_code == 404
    )
    assert client.get("/api/v1/meters/m1/mismatches", headers=keys.h("customer")).status_code == 403
