"""Print sites over HTTP (contract section 6, "Paper routing"): POST /print-sites (admin) with a
422 naming the field for bad input, a routed bill's delivery on GET /bills/{id}, and the day's
batch PDF from GET /print-sites/{id}/batches/{date} (operator, admin)."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from hub.billing.periods import Period
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.db import run_tx
from hub.models import utcnow
from tests.hub.api.conftest import Keys

SITE = {"id": "north", "name": "North Print", "per_piece": "0.50", "daily_capacity": 100,
        "zones": [{"prefix": "n1", "transport": "0.20", "co2_g": 12},
                  {"prefix": "N", "transport": "0.40", "co2_g": 30}]}  # fmt: skip


def loc_of(r: httpx.Response) -> list[str]:
    """Where a 422 says the error is (list indexes as strings: pydantic's are numbers, the
    hub's own checks' are strings)."""
    assert r.status_code == 422, r.text
    return [str(part) for part in r.json()["detail"][0]["loc"]]


def test_create_a_site_and_refuse_bad_input(client: httpx.Client, keys: Keys) -> None:
    h = keys.h("admin")
    r = client.post("/api/v1/print-sites", json=SITE, headers=h)
    assert r.status_code == 201, r.text
    assert r.json() == {"id": "north", "name": "North Print", "per_piece": "0.50",
                        "currency": "USD", "daily_capacity": 100,
                        "zones": [{"prefix": "N", "transport": "0.40", "co2_g": 30},
                                  {"prefix": "N1", "transport": "0.20", "co2_g": 12}]}  # fmt: skip
    assert client.post("/api/v1/print-sites", json=SITE, headers=h).status_code == 409
    assert client.post("/api/v1/print-sites", json={**SITE, "id": "x"},
                       headers=keys.h("operator")).status_code == 403  # fmt: skip
    bad: list[tuple[dict[str, Any], list[str]]] = [
        ({"per_piece": "abc"}, ["body", "per_piece"]),
        ({"per_piece": "0.001"}, ["body", "per_piece"]),
        ({"daily_capacity": -1}, ["body", "daily_capacity"]),
        ({"zones": []}, ["body", "zones"]),
        ({"zones": [{"prefix": "N", "transport": "0.1", "co2_g": -5}]},
         ["body", "zones", "0", "co2_g"]),
        ({"zones": [{"prefix": "N", "transport": "0.1", "co2_g": 1},
                    {"prefix": "n", "transport": "0.2", "co2_g": 1}]},
         ["body", "zones", "1", "prefix"]),
        ({"zones": [{"prefix": "N/1", "transport": "0.1", "co2_g": 1}]},
         ["body", "zones", "0", "prefix"]),
        ({"zones": [{"prefix": "N", "transport": "1.234", "co2_g": 1}]},
         ["body", "zones", "0", "transport"]),
    ]  # fmt: skip
    for change, loc in bad:
        r = client.post("/api/v1/print-sites", json={**SITE, "id": "bad", **change}, headers=h)
        assert loc_of(r)[: len(loc)] == loc, (change, r.text)


def test_a_paper_bill_is_routed_and_its_batch_printed(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    h = keys.h("admin")
    assert client.post("/api/v1/print-sites", json=SITE, headers=h).status_code == 201
    profile = {"customer": "c1", "address": "1 Mill Lane", "postal_code": "N1 4AA",
               "country": "GB", "delivery": "both", "email": "ada@example.org"}  # fmt: skip
    r = client.post("/api/v1/imports/profiles", json={"rows": [profile]}, headers=h)
    assert r.json()["accepted"] == 1, r.text
    period = Period.of(utcnow(), UTC)  # c1 was made now: billed once the period has ended
    now = period.end(UTC) + timedelta(hours=1)
    settings = BillingSettings(timezone="UTC", smtp_url="")
    run_tx(api_engine, lambda s: run_billing(s.connection(), period, settings, now))

    (summary,) = client.get("/api/v1/customers/c1/bills", headers=h).json()
    bill = client.get(f"/api/v1/bills/{summary['id']}", headers=keys.h("customer")).json()
    (paper,) = bill["delivery"]
    assert paper["site"] == "north" and paper["cost"] == "0.70" and paper["co2_g"] == 12
    assert paper["candidates"][0]["prefix"] == "N1" and paper["day"] == str(now.date())
    c2 = client.get("/api/v1/customers/c2/bills", headers=h).json()[0]  # no profile: no paper
    assert client.get(f"/api/v1/bills/{c2['id']}", headers=h).json()["delivery"] == []

    url = f"/api/v1/print-sites/north/batches/{now.date()}"
    pdf = client.get(url, headers=keys.h("operator"))
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content[:5] == b"%PDF-"
    assert client.get(url, headers=keys.h("customer")).status_code == 403
    assert client.get("/api/v1/print-sites/nope/batches/2027-01-01", headers=h).status_code == 404
    assert client.get("/api/v1/print-sites/north/batches/2001-01-01", headers=h).status_code == 404
    assert loc_of(client.get("/api/v1/print-sites/north/batches/13-2027", headers=h)) == [
        "path", "day",
    ]  # fmt: skip
