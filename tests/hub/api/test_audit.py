"""GET /api/v1/audit (issue 20, item 4): every money movement, command and configuration change
names who or what caused it (API key, provider, job, the command line, credit control), read
through a real server, filtered and paged."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine, select

from hub.db import session_scope, write_tx
from hub.keys import find_key
from hub.rating.standing import standing_charges_job
from hub.tokens.settle import settle_token_event
from hub.tokens.store import T_TOKENS
from tests.hub.api.conftest import Keys
from tests.hub.api.test_payments import body, post


def key_id(engine: Engine, key: str) -> int:
    with session_scope(engine, write=False) as session:
        found = find_key(session, key)
        assert found is not None and found.id is not None
        return found.id


def audit(client: httpx.Client, keys: Keys, **params: Any) -> dict[str, Any]:
    r = client.get("/api/v1/audit", params=params, headers=keys.h("admin"))
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def test_configuration_money_and_commands_name_their_cause(
    client: httpx.Client, keys: Keys, api_engine: Engine, api_settings: Any
) -> None:
    admin = f"key:{key_id(api_engine, keys.admin)}"
    operator = f"key:{key_id(api_engine, keys.operator)}"
    made = audit(client, keys, actor=admin, limit=500)["items"]
    created = sorted((e["kind"], next(v for k, v in e["data"].items()
                                      if k == e["kind"].removesuffix("_created")))
                     for e in made)  # fmt: skip
    assert created == sorted([
        ("provider_created", "gen"), ("provider_created", "ret"), ("tariff_created", "t1"),
        ("account_created", "sponsor"), ("customer_created", "c1"), ("customer_created", "c2"),
        ("gateway_created", "gw1"), ("meter_created", "m1"), ("meter_created", "m2"),
    ])  # fmt: skip
    gateway = next(e for e in made if e["kind"] == "gateway_created")
    assert "password" not in str(gateway) and "command_key" not in str(gateway)

    r = client.post("/api/v1/accounts/c1/topups", json={"amount": "12.34", "reference": "cash"},
                    headers={**keys.h("admin"), "Idempotency-Key": "a1"})  # fmt: skip
    assert r.status_code == 201, r.text
    again = client.post("/api/v1/accounts/c1/topups", json={"amount": "12.34", "reference": "cash"},
                        headers={**keys.h("admin"), "Idempotency-Key": "a1"})  # fmt: skip
    assert again.status_code in (200, 201)  # a replay moves nothing and audits nothing
    assert post(client, body(txn="TX9", amount="5.00")).status_code == 201
    topups = audit(client, keys, kind="topup")["items"]
    assert [(t["actor"], t["data"]["amount"], t["data"]["account"]) for t in topups] == [
        ("provider:mpesa", 500, "c1"),
        (admin, 1234, "c1"),
    ]
    assert topups[1]["data"]["entry_id"] == r.json()["id"]

    cut = client.post("/api/v1/meters/m2/disconnect", json={"reason": "unsafe wiring"},
                      headers=keys.h("operator"))  # fmt: skip
    assert cut.status_code == 202, cut.text
    (command,) = audit(client, keys, actor=operator)["items"]
    assert command["kind"] == "disconnect" and command["meter"] == "m2"
    assert command["data"]["command_id"] == cut.json()["command_id"]

    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    assert standing_charges_job(api_settings.db, tomorrow) == 0  # t1 has no standing charge
    assert audit(client, keys, actor="job")["items"] == []  # a run that posted nothing


def test_standing_charges_job_is_audited(
    client: httpx.Client, keys: Keys, api_settings: Any
) -> None:
    doc = {"currency": "USD", "components": [{"provider": "gen", "per_day": "0.30"}]}
    r = client.post("/api/v1/tariffs", json={"id": "daily", **doc}, headers=keys.h("admin"))
    assert r.status_code == 201, r.text
    meter = {"id": "m3", "gateway": "gw1", "customer": "c2", "tariff": "daily"}
    r = client.post("/api/v1/meters", headers=keys.h("admin"), json=meter)
    assert r.status_code == 201, r.text
    day = date.today() + timedelta(days=1)
    assert standing_charges_job(api_settings.db, day.isoformat()) == 1
    assert standing_charges_job(api_settings.db, day.isoformat()) == 0  # idempotent, no row
    (run,) = audit(client, keys, actor="job:standing_charges")["items"]
    assert run["kind"] == "job_posted"
    assert run["data"] == {"by": "job", "job": "standing_charges", "entries": 1,
                           "day": day.isoformat()}  # fmt: skip


def test_paging_filters_and_access(client: httpx.Client, keys: Keys) -> None:
    everything = audit(client, keys, limit=500)["items"]
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids, reverse=True) and len(ids) >= 9
    first = audit(client, keys, limit=4)
    second = audit(client, keys, limit=4, before=first["next_before"])
    assert [e["id"] for e in first["items"] + second["items"]] == ids[:8]
    last = audit(client, keys, limit=500, before=ids[-1] + 1)
    assert [e["id"] for e in last["items"]] == [ids[-1]] and last["next_before"] is None
    assert {e["actor"].split(":")[0] for e in audit(client, keys, actor="key")["items"]} == {"key"}
    assert audit(client, keys, kind="meter_created", meter="nope")["items"] == []
    at = datetime.fromisoformat(everything[0]["at"])
    later = (at + timedelta(seconds=1)).isoformat()
    assert audit(client, keys, since=later)["items"] == []
    assert audit(client, keys, until=later, limit=500)["items"] == everything
    for role in ("operator", "customer"):
        assert client.get("/api/v1/audit", headers=keys.h(role)).status_code == 403
    for bad in ({"actor": "key 7"}, {"limit": "0"}, {"before": "0"},
                {"since": later, "until": later}, {"kind": "Topup!"}):  # fmt: skip
        r = client.get("/api/v1/audit", params=bad, headers=keys.h("admin"))
        assert r.status_code == 422, (bad, r.text)


def test_tokens_are_audited_vend_cancel_and_settle(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    admin = f"key:{key_id(api_engine, keys.admin)}"
    operator = f"key:{key_id(api_engine, keys.operator)}"
    r = client.post("/api/v1/accounts/c1/topups", json={"amount": "50.00", "reference": "t"},
                    headers={**keys.h("admin"), "Idempotency-Key": "t"})  # fmt: skip
    assert r.status_code == 201
    made = []
    for key in ("v1", "v2"):
        r = client.post("/api/v1/accounts/c1/tokens", json={"amount": "10.00", "meter": "m1"},
                        headers={**keys.h("admin"), "Idempotency-Key": key})  # fmt: skip
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    assert client.post(f"/api/v1/tokens/{made[0]}/cancel",
                       headers=keys.h("operator")).status_code == 200  # fmt: skip
    with write_tx(api_engine) as conn:
        count = conn.execute(select(T_TOKENS.c["count"]).where(T_TOKENS.c.id == made[1]))
        assert settle_token_event(conn, "m1", {"count": count.scalar_one(),
                                               "amount": 1000}) == "settled"  # fmt: skip
    trail = [(e["kind"], e["actor"], e["data"].get("amount"))
             for e in audit(client, keys, meter="m1")["items"]]  # fmt: skip
    assert trail == [
        ("token_settled", "gateway:gw1", 1000),
        ("token_cancelled", operator, 1000),
        ("token_vended", admin, 1000),
        ("token_vended", admin, 1000),
    ]
    feed = client.get("/api/v1/events", headers=keys.h("operator")).json()
    assert not [e for e in feed if e["kind"].startswith("token_")]  # the trail, not the feed
