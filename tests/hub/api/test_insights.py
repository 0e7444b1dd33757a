"""GET /customers/{id}/insights end to end (issue 19): usage imported through
POST /imports/readings and settled by the ingest path, a tariff created with "offer": true,
offers computed by re-rating and checked against a saving computed here by hand."""

from __future__ import annotations

import csv
import itertools
import math
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, insert

from hub.db import write_tx
from hub.models import Event, table
from hub.settings import HubSettings
from tests.hub.api.conftest import Keys
from tests.hub.api.test_cli import main_exit

FLAT = Fraction("0.15")  # t1: 0.10 + 0.05 per kWh
DAY, NIGHT = Fraction("0.19"), Fraction("0.10")  # the offered tariff: 22:00-07:00 is night
TOU = {
    "id": "tou",
    "currency": "USD",
    "offer": True,
    "components": [
        {"provider": "gen", "per_kwh": "0.14",
         "tou": [{"start": "22:00", "end": "07:00", "price": "0.05"}]},
        {"provider": "ret", "per_kwh": "0.05"},
    ],
}  # fmt: skip
STEP = timedelta(hours=1)  # readings hourly: the import settles them one by one


def night(at: datetime) -> bool:
    return at.hour >= 22 or at.hour < 7


def readings(meter: str, start: datetime, days: int, night_wh: int, day_wh: int) -> list[dict]:
    """Readings every hour; the usage of the hour from ``at`` is night's or day's."""
    rows, register, at = [], 1000, start
    for _ in range(days * 24):
        rows.append({"meter": meter, "at": at.isoformat(), "import": register})
        register += night_wh if night(at) else day_wh
        at += STEP
    rows.append({"meter": meter, "at": at.isoformat(), "import": register})
    return rows


def saving_cents(rows: list[dict]) -> int:
    """What the readings cost less on the offered tariff, in cents, rounded down."""
    total = Fraction(0)
    for a, b in itertools.pairwise(rows):
        at = datetime.fromisoformat(a["at"])
        kwh = Fraction(b["import"] - a["import"], 1000)
        total += kwh * (FLAT - (NIGHT if night(at) else DAY)) * 100
    return math.floor(total)


def start_of_window(days: int) -> datetime:
    now = datetime.now(UTC)
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(days=days, hours=1)


def setup(client: httpx.Client, keys: Keys) -> dict[str, list[dict]]:
    admin = keys.h("admin")
    assert client.post("/api/v1/tariffs", json=TOU, headers=admin).status_code == 201
    assert client.get("/api/v1/tariffs/tou", headers=admin).json()["offer"] is True
    for cid, protected in (("c3", True), ("c4", False)):
        body = {"id": cid, "name": cid, "protected": protected}
        assert client.post("/api/v1/customers", json=body, headers=admin).status_code == 201
        body = {"id": f"m{cid[1]}", "gateway": "gw1", "customer": cid, "tariff": "t1"}
        assert client.post("/api/v1/meters", json=body, headers=admin).status_code == 201
    profile = {"customer": "c4", "address": "1 Road", "postal_code": "AB1", "country": "GB",
               "delivery": "email", "email": "c4@example.org", "offers_opt_out": "yes"}  # fmt: skip
    r = client.post("/api/v1/imports/profiles", json={"rows": [profile]}, headers=admin)
    assert r.status_code == 200 and r.json()["accepted"] == 1, r.text
    start = start_of_window(4)
    rows = {
        "m1": readings("m1", start, 4, night_wh=1600, day_wh=80),  # mostly off-peak
        "m2": readings("m2", start, 4, night_wh=80, day_wh=1600),  # mostly by day
        "m3": readings("m3", start, 4, night_wh=1600, day_wh=80),  # protected
        "m4": readings("m4", start, 4, night_wh=1600, day_wh=80),  # opted out
    }
    for meter_rows in rows.values():
        r = client.post(
            "/api/v1/imports/readings", json={"rows": meter_rows}, headers=admin, timeout=60
        )
        assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    return rows


def test_offers_the_tou_tariff_with_its_saving_once_and_never_when_withheld(
    client: httpx.Client,
    keys: Keys,
    api_settings: HubSettings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = setup(client, keys)
    expected = saving_cents(rows["m1"])
    assert expected > 100
    assert saving_cents(rows["m2"]) < 0

    r = client.get("/api/v1/customers/c1/insights", headers=keys.h("customer"))
    assert r.status_code == 200, r.text
    body = r.json()
    (offer,) = [o for o in body["offers"] if o["kind"] == "tariff"]
    assert offer["tariff"] == "tou"
    assert offer["saving"] == f"{expected // 100}.{expected % 100:02d}"
    assert "tou" in offer["reason"] and offer["saving"] in offer["reason"]
    (meter,) = body["usage"]["meters"]
    assert meter["meter"] == "m1" and meter["windows"]["off_peak"] > 0.8
    assert sum(meter["hourly"]) > 0 and len(meter["weekly"]) == 7
    assert "risk" in body["payments"] and isinstance(body["anomalies"], list)

    again = client.get("/api/v1/customers/c1/insights", headers=keys.h("customer")).json()
    assert again["offers"] == []  # shown once per customer and period
    staff = client.get("/api/v1/customers/c1/insights", headers=keys.h("operator")).json()
    (seen,) = [o for o in staff["offers"] if o["kind"] == "tariff"]
    assert seen["shown_at"] is not None and seen["saving"] == offer["saving"]

    other = client.get("/api/v1/customers/c2/insights", headers=keys.h("other")).json()
    assert [o for o in other["offers"] if o["kind"] == "tariff"] == []  # would pay more

    for cid, why in (("c3", "protected"), ("c4", "opted out")):
        answer = client.get(f"/api/v1/customers/{cid}/insights", headers=keys.h("admin")).json()
        assert answer["offers"] == [] and why in answer["offers_withheld"]

    period = datetime.now(UTC).strftime("%Y-%m")  # the CSV report per customer
    args = ("insights", "--period", period, "--out", str(tmp_path), "--db", api_settings.db)
    assert main_exit(capsys, *args) == (0, f"wrote 4 reports to {tmp_path}\n", "")
    with (tmp_path / f"c1-{period}.csv").open(newline="") as f:
        report = list(csv.DictReader(f))
    (row,) = [r for r in report if r["section"] == "offer" and r["item"] == "tariff"]
    assert f"saving {offer['saving']}" in row["value"]
    assert any(r["section"] == "payments" and r["item"] == "risk" for r in report)
    withheld = list(csv.DictReader((tmp_path / f"c3-{period}.csv").open(newline="")))
    assert [r["item"] for r in withheld if r["section"] == "offer"] == ["withheld"]
    code, _, err = main_exit(capsys, "insights", "--period", "2026-13", "--db", api_settings.db)
    assert code == 1 and err == "smsa-hub: period: must be YYYY-MM\n"


def test_energy_while_disconnected_is_raised_once_as_an_operator_event(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    admin = keys.h("admin")
    start = start_of_window(2)
    rows = readings("m1", start, 2, night_wh=500, day_wh=500)
    r = client.post("/api/v1/imports/readings", json={"rows": rows}, headers=admin, timeout=60)
    assert r.status_code == 200 and r.json()["rejected"] == [], r.text
    off, on = start + timedelta(hours=10), start + timedelta(hours=13)
    with write_tx(api_engine) as conn:  # the gateway's events, as ingest stores them
        conn.execute(insert(table(Event)), [
            {"kind": "disconnect", "meter_id": "m1", "at": off, "reason": "operator",
             "data": {"cause": "command"}},
            {"kind": "reconnect", "meter_id": "m1", "at": on, "reason": "operator", "data": {}},
        ])  # fmt: skip
    for _ in range(2):
        body = client.get("/api/v1/customers/c1/insights", headers=keys.h("customer")).json()
        (found,) = body["anomalies"]
        assert found["kind"] == "energy_while_off" and found["evidence"]["energy"] == 3 * 500
    (event,) = client.get("/api/v1/insights/anomalies", headers=keys.h("operator")).json()
    assert event["anomaly"] == "energy_while_off" and event["severity"] == "high"
    assert event["meter"] == "m1" and event["records"] == 3
    listed = client.get("/api/v1/events?kind=anomaly", headers=keys.h("operator")).json()
    assert [e["meter"] for e in listed] == ["m1"]
    assert body["payments"]["disconnected_share"] == round(3 / (90 * 24), 4)


def test_roles(client: httpx.Client, keys: Keys) -> None:
    mine = keys.h("customer")
    assert client.get("/api/v1/customers/c2/insights", headers=mine).status_code == 403
    assert client.get("/api/v1/customers/c1/insights").status_code == 401
    assert client.get("/api/v1/customers/nope/insights", headers=keys.h("admin")).status_code == 404
    r = client.get("/api/v1/insights/anomalies", headers=keys.h("operator"))
    assert r.status_code == 200 and r.json() == []
    assert client.get("/api/v1/insights/anomalies", headers=keys.h("customer")).status_code == 403
