"""POST /subscriptions: a monthly unmetered charge from one provider, posted in advance (the
first month prorated by days), once per month, and billed as one line per month."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import Engine

from hub.billing.jobs import subscriptions_job
from hub.billing.periods import Period
from hub.billing.subscriptions import month_charge
from tests.hub.api.conftest import Keys

UTC_ZONE = ZoneInfo("UTC")


def test_month_charge_prorates_the_first_month() -> None:
    start = date(2026, 11, 16)
    assert month_charge(3000, start, Period(2026, 10), UTC_ZONE) is None
    first = month_charge(3000, start, Period(2026, 11), UTC_ZONE)
    assert first is not None and (first.amount, first.days) == (1500, 15)
    full = month_charge(3000, start, Period(2027, 2), UTC_ZONE)
    assert full is not None and (full.amount, full.days) == (3000, 28)
    odd = month_charge(1000, date(2027, 1, 31), Period(2027, 1), UTC_ZONE)
    assert odd is not None and odd.amount == 1000 * 1 // 31


def test_subscription_is_posted_once_and_billed(
    client: httpx.Client, keys: Keys, api_settings: object, api_engine: Engine
) -> None:
    h = keys.h("admin")
    r = client.post("/api/v1/providers", json={"id": "isp", "name": "ISP", "tier": "retail"},
                    headers=h)  # fmt: skip
    assert r.status_code == 201
    body = {"id": "net1", "customer": "c1", "provider": "isp", "service": "internet",
            "per_month": "30.00", "start": "2026-11-16"}  # fmt: skip
    r = client.post("/api/v1/subscriptions", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["per_month"] == "30.00"
    assert client.post("/api/v1/subscriptions", json=body, headers=h).status_code == 409
    bad = {**body, "id": "net2", "provider": "nobody"}
    r = client.post("/api/v1/subscriptions", json=bad, headers=h)
    assert r.status_code == 422 and "provider" in r.text
    assert client.post("/api/v1/subscriptions", json={**body, "id": "net3", "per_month": "-1"},
                       headers=h).status_code == 422  # fmt: skip

    db = api_settings.db  # type: ignore[attr-defined]
    assert subscriptions_job(db, now="2026-12-02T00:00:00+00:00") == 2  # November and December
    assert subscriptions_job(db, now="2026-12-03T00:00:00+00:00") == 0
    assert client.get("/api/v1/accounts/c1", headers=h).json()["balance"] == "-45.00"

    run = client.post("/api/v1/billing/runs", json={"period": "2026-11"}, headers=h)
    assert run.status_code == 201, run.text
    (summary,) = client.get("/api/v1/customers/c1/bills", headers=h).json()
    bill = client.get(f"/api/v1/bills/{summary['id']}", headers=h).json()
    assert [(x["service"], x["provider"], x["tier"], x["quantity"], x["unit"], x["rate"],
             x["amount"]) for x in bill["lines"]] == [
        ("internet", "isp", "retail", "1", "month", "30.00", "15.00")]  # fmt: skip
