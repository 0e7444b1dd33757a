"""POST /imports/readings through a live server: a water meter fed by a distributor's feed is
settled through the ingest path exactly; an overlapping feed counts nothing twice; bad rows are
reported by row and field and never stop the good ones; a reading that disagrees with the
gateway's record is a mismatch; a provider key imports only for its own customers' meters."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from tests.hub.api.conftest import Keys, new_key
from tests.hub.billing.ledgerdata import post_usage


def water_world(client: httpx.Client, keys: Keys) -> None:
    h = keys.h("admin")
    calls = [
        ("/api/v1/providers", {"id": "waterco", "name": "Water Co", "tier": "distribution"}),
        ("/api/v1/tariffs", {"id": "tw", "currency": "USD",
                             "components": [{"provider": "waterco", "per_m3": "1.20"}]}),
        ("/api/v1/gateways", {"id": "gw-feed"}),
        ("/api/v1/meters", {"id": "w1", "gateway": "gw-feed", "customer": "c1", "tariff": "tw",
                            "service": "water"}),
    ]  # fmt: skip
    for path, body in calls:
        r = client.post(path, json=body, headers=h)
        assert r.status_code == 201, (path, r.text)


def balance(client: httpx.Client, keys: Keys, account: str) -> str:
    return str(client.get(f"/api/v1/accounts/{account}", headers=keys.h("admin")).json()["balance"])


def test_readings_feed(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    water_world(client, keys)
    feed = {"rows": [
        {"meter": "w1", "at": "2026-11-01T00:00:00Z", "import": 1000},
        {"meter": "w1", "at": "yesterday", "import": 5},
        {"meter": "w1", "at": "2026-11-15T00:00:00Z", "import": 4000},
        {"meter": "nope", "at": "2026-11-16T00:00:00Z", "import": 5},
        {"meter": "w1", "at": "2026-11-20T00:00:00Z", "import": -3},
        {"meter": "w1", "at": "2026-11-30T00:00:00Z", "import": "6500"},
    ]}  # fmt: skip
    r = client.post("/api/v1/imports/readings", json=feed, headers=keys.h("admin"))
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["accepted"] == 3
    assert [(x["row"], x["field"]) for x in report["rejected"]] == [
        (2, "at"), (4, "meter"), (5, "import")]  # fmt: skip
    assert balance(client, keys, "c1") == "-6.60"  # 5.5 m3 at 1.20, through ingest's rating

    again = client.post("/api/v1/imports/readings", json=feed, headers=keys.h("admin")).json()
    assert again["accepted"] == 3 and balance(client, keys, "c1") == "-6.60"
    csv = "meter,at,import\nw1,2026-11-10T00:00:00Z,2500\nw1,2026-12-01T00:00:00Z,6000\n"
    r = client.post("/api/v1/imports/readings", content=csv,
                    headers={**keys.h("admin"), "Content-Type": "text/csv"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == [{"row": 2, "field": "import",
                                     "error": "register went back from 6500"}]  # fmt: skip
    assert balance(client, keys, "c1") == "-6.60"
    bad = client.post("/api/v1/imports/readings", content=b"meter,when\n",
                      headers={**keys.h("admin"), "Content-Type": "text/csv"})  # fmt: skip
    assert bad.status_code == 422 and "at, import" in bad.text

    ledger = client.get("/api/v1/ledger/check", headers=keys.h("admin")).json()
    assert ledger["ok"], ledger


def test_gateway_meter_mismatch_and_provider_scope(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    water_world(client, keys)
    # m1's gateway reported seq 1: register 1000 -> 3000 over the hour to 2026-11-05T10:00Z
    post_usage(api_engine, ("m1", "c1"), 1, datetime(2026, 11, 5, 10, tzinfo=UTC), 2000,
               rates={"gen": 10, "ret": 5}, tariff="t1")  # fmt: skip
    before = balance(client, keys, "c1")
    rows = {"rows": [{"meter": "m1", "at": "2026-11-05T09:30:00Z", "import": 2500},
                     {"meter": "m1", "at": "2026-11-05T09:45:00Z", "import": 9999},
                     {"meter": "m1", "at": "2026-11-06T00:00:00Z", "import": 4000}]}  # fmt: skip
    report = client.post("/api/v1/imports/readings", json=rows, headers=keys.h("admin")).json()
    assert report["accepted"] == 3 and report["rejected"] == []
    assert [(m["meter"], m["import"], m["agent"]) for m in report["mismatches"]] == [
        ("m1", 9999, [1000, 3000])]  # fmt: skip
    assert balance(client, keys, "c1") == before  # nothing the gateway reported counted twice

    waterco = new_key(api_engine, "provider", "provider:waterco")
    h = {"Authorization": f"Bearer {waterco}"}
    mine = {"rows": [{"meter": "w1", "at": "2026-11-01T00:00:00Z", "import": 10},
                     {"meter": "m1", "at": "2026-11-05T09:30:00Z", "import": 2500}]}  # fmt: skip
    r = client.post("/api/v1/imports/readings", json=mine, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1 and r.json()["rejected"][0]["row"] == 2
    assert client.get("/api/v1/accounts/c1", headers=h).status_code == 403
    assert client.post("/api/v1/imports/readings", json=mine,
                       headers=keys.h("operator")).status_code == 403  # fmt: skip
