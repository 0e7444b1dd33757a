"""Billing routes through a live server (contract section 6): POST /billing/runs, a customer's
bills, one bill; a customer key sees only its own bills; a postpaid customer is created with
``"billing": "postpaid"``."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from tests.hub.api.conftest import Keys
from tests.hub.billing.ledgerdata import post_usage

RATES = {"gen": 10, "ret": 5}  # tariff t1 of the API world, minor units per kWh


def test_billing_run_and_bills(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    r = client.post("/api/v1/customers", json={"id": "c3", "name": "Cy", "billing": "postpaid"},
                    headers=keys.h("admin"))  # fmt: skip
    assert r.status_code == 201 and r.json()["billing"] == "postpaid", r.text
    post_usage(api_engine, ("m1", "c1"), 1, datetime(2026, 11, 5, tzinfo=UTC), 12_000, rates=RATES,
               tariff="t1")  # fmt: skip
    post_usage(api_engine, ("m1", "c1"), 2, datetime(2026, 11, 25, tzinfo=UTC), 3_000, rates=RATES,
               tariff="t1")  # fmt: skip

    assert client.post("/api/v1/billing/runs", json={"period": "2026-13"},
                       headers=keys.h("admin")).status_code == 422  # fmt: skip
    assert client.post("/api/v1/billing/runs", json={"period": "2099-01"},
                       headers=keys.h("admin")).status_code == 409  # fmt: skip
    assert client.post("/api/v1/billing/runs", json={"period": "2026-11"},
                       headers=keys.h("operator")).status_code == 403  # fmt: skip
    r = client.post("/api/v1/billing/runs", json={"period": "2026-11"}, headers=keys.h("admin"))
    assert r.status_code == 201, r.text
    bills = r.json()["bills"]
    again = client.post("/api/v1/billing/runs", json={"period": "2026-11"},
                        headers=keys.h("admin"))  # fmt: skip
    assert again.status_code == 200 and again.json()["bills"] == bills

    mine = client.get("/api/v1/customers/c1/bills", headers=keys.h("customer"))
    assert mine.status_code == 200, mine.text
    ((summary,),) = [mine.json()]
    assert summary["period"] == "2026-11" and summary["charges"] == "2.25"
    assert summary["status"] == "statement" and summary["amount_due"] == "0.00"
    bill = client.get(f"/api/v1/bills/{summary['id']}", headers=keys.h("customer")).json()
    assert [(x["provider"], x["tier"], x["quantity"], x["unit"], x["rate"], x["amount"])
            for x in bill["lines"]] == [
        ("gen", "generation", "15.000", "kWh", "0.10", "1.50"),
        ("ret", "retail", "15.000", "kWh", "0.05", "0.75"),
    ]  # fmt: skip
    assert bill["number"].startswith("SMSA-2026-") and bill["charges"] == "2.25"

    assert client.get("/api/v1/customers/c2/bills", headers=keys.h("customer")).status_code == 403
    assert client.get(f"/api/v1/bills/{summary['id']}",
                      headers=keys.h("other")).status_code == 403  # fmt: skip
    assert client.get("/api/v1/bills/999999", headers=keys.h("admin")).status_code == 404
    operator = client.get("/api/v1/customers/c1/bills", headers=keys.h("operator"))
    assert operator.status_code == 200 and operator.json() == mine.json()
    # c2 was created after November and has nothing in it: no bill
    assert client.get("/api/v1/customers/c2/bills", headers=keys.h("admin")).json() == []
