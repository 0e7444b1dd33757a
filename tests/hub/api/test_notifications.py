"""A customer sees its prompts (issue 15, item 6): ``GET /accounts/{id}/notifications``, fed by
credit control in a real ingest service through Mosquitto, with the amount that reconnects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import Engine

from hub.ingest.service import IngestService
from hub.services.notifications import reconnect_amount, topup_link
from hub.settings import HubSettings
from protocol.messages import MAX_MONEY, CreditRules
from protocol.rules import Memory, evaluate
from tests.conftest import Broker
from tests.hub.api.conftest import Keys, new_key
from tests.hub.ingest.helpers import publisher
from tests.support import wait_for

UTC_ZONE = ZoneInfo("UTC")
balances = st.integers(min_value=-MAX_MONEY // 2, max_value=MAX_MONEY // 2)
levels = st.integers(min_value=-MAX_MONEY // 2, max_value=MAX_MONEY // 2)


@given(balance=balances, level=levels)
def test_the_reconnect_amount_is_the_least_top_up_the_rules_reconnect_on(
    balance: int, level: int
) -> None:
    rules = CreditRules(reconnect_above=level)
    cut = Memory(relay="disconnected", cut_by_rules=True)
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    amount = reconnect_amount(balance, rules)
    assert amount >= 0
    decision, _ = evaluate(balance + amount, rules, UTC_ZONE, cut, now)
    assert decision.action == "reconnect"
    if amount > 0:
        decision, _ = evaluate(balance + amount - 1, rules, UTC_ZONE, cut, now)
        assert decision.action == "none"


def test_the_top_up_link_fills_account_and_amount() -> None:
    url = "https://pay.example/top-up?to={account}&amount={amount}"
    assert topup_link(url, "c 1", 231, "USD") == "https://pay.example/top-up?to=c%201&amount=2.31"
    assert HubSettings().topup_url == "/api/v1/accounts/{account}/topups"
    with pytest.raises(ValidationError, match="topup_url"):
        HubSettings(topup_url="https://pay.example/{who}")


def record(seq: int, t0: datetime, start: int, used: int) -> dict[str, object]:
    start_at, end_at = t0 + timedelta(minutes=seq - 1), t0 + timedelta(minutes=seq)
    return {"meter": "m3", "seq": seq, "start": start_at.isoformat(), "end": end_at.isoformat(),
            "import_start": start, "import_end": start + used}  # fmt: skip


def test_a_customer_reads_its_low_credit_and_cut_off_with_what_reconnects(
    client: httpx.Client, keys: Keys, api_engine: Engine, mosquitto: Broker
) -> None:
    admin = keys.h("admin")
    rules = {"low_credit": [500], "reconnect_above": 200}
    r = client.post("/api/v1/customers", headers=admin,
                    json={"id": "c3", "name": "Cy", "credit_rules": rules})  # fmt: skip
    assert r.status_code == 201, r.text
    meter = {"id": "m3", "gateway": "gw1", "customer": "c3", "tariff": "t1"}
    assert client.post("/api/v1/meters", json=meter, headers=admin).status_code == 201
    r = client.post("/api/v1/accounts/c3/topups", json={"amount": "6.00", "reference": "n1"},
                    headers={**admin, "Idempotency-Key": "n1"})  # fmt: skip
    assert r.status_code == 201, r.text
    own = {"Authorization": f"Bearer {new_key(api_engine, 'customer', 'c3')}"}

    def kinds() -> list[str]:
        r = client.get("/api/v1/accounts/c3/notifications", headers=own)
        assert r.status_code == 200, r.text
        return [n["kind"] for n in r.json()["items"]]

    t0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # the tariff in force
    service = IngestService(api_engine, mosquitto.url, client_id="hub-nt", batch_wait_s=0.02,
                            credit_interval_s=0.2)  # fmt: skip
    service.start()
    try:
        assert service.wait_connected(10)
        with publisher(mosquitto.port) as pub:
            pub.usage("gw1", [record(1, t0, 1000, 38_000)])  # 5.70 at 0.15/kWh: 0.30 left
            wait_for(lambda: kinds() == ["low_credit"])
            pub.usage("gw1", [record(2, t0, 39_000, 4_000)])  # 0.60 more: -0.30
            wait_for(lambda: kinds()[:1] == ["disconnect"])
    finally:
        service.stop()

    body = client.get("/api/v1/accounts/c3/notifications", headers=own).json()
    assert body["balance"] == "-0.30"
    assert body["reconnect_amount"] == "2.31"  # strictly above 2.00 from -0.30
    assert body["topup_url"] == "/api/v1/accounts/c3/topups"
    assert [n["kind"] for n in body["items"]] == ["disconnect", "low_credit"]
    assert all(n["meter"] == "m3" and n["reconnect_amount"] == "2.31" for n in body["items"])
    assert body["items"][0]["id"] > body["items"][1]["id"]  # newest first
    page = client.get("/api/v1/accounts/c3/notifications", headers=own, params={"limit": 1})
    assert [n["kind"] for n in page.json()["items"]] == ["disconnect"]
    older = client.get("/api/v1/accounts/c3/notifications", headers=own,
                       params={"limit": 1, "before": page.json()["next_before"]})  # fmt: skip
    assert [n["kind"] for n in older.json()["items"]] == ["low_credit"]

    def status(account: str, headers: dict[str, str]) -> int:
        return client.get(f"/api/v1/accounts/{account}/notifications", headers=headers).status_code

    operator = client.get("/api/v1/accounts/c3/notifications", headers=keys.h("operator"))
    assert operator.json() == body
    c1 = client.get("/api/v1/accounts/c1/notifications", headers=keys.h("customer"))
    assert c1.json()["items"] == []
    assert status("c3", keys.h("customer")) == 403  # another customer's key
    assert status("c1", own) == 403
    assert status("nope", admin) == 404
