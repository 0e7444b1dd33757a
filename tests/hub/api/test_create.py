"""Creating parties and devices: what each POST creates, duplicates (409), bad references and
unknown fields (422 naming the field)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from hub import ledger
from hub.db import run_tx, session_scope
from hub.gateways import verify_password
from hub.ledger import UsagePosting
from hub.models import Gateway
from tests.hub.api.conftest import Keys, Shared
from tests.hub.api.helpers import error_fields


def post(client: httpx.Client, keys: Keys, path: str, body: Any) -> httpx.Response:
    return client.post(f"/api/v1/{path}", json=body, headers=keys.h("admin"))


def test_provider_gets_a_settlement_account(client: httpx.Client, keys: Keys) -> None:
    r = post(client, keys, "providers", {"id": "dist", "name": "Wires", "tier": "distribution"})
    assert r.status_code == 201
    got = client.get("/api/v1/providers/dist", headers=keys.h("operator")).json()
    assert {k: got[k] for k in ("id", "tier", "balance")} == {
        "id": "dist",
        "tier": "distribution",
        "balance": "0.00",
    }
    account = client.get(f"/api/v1/accounts/{got['account']}", headers=keys.h("admin")).json()
    assert account["kind"] == "provider"


def test_customer_gets_its_prepaid_account(client: httpx.Client, keys: Keys) -> None:
    assert (
        post(client, keys, "customers", {"id": "c9", "name": "Cy", "protected": True}).status_code
        == 201
    )
    account = client.get("/api/v1/accounts/c9", headers=keys.h("operator")).json()
    assert account == {
        "id": "c9",
        "balance": "0.00",
        "currency": "USD",
        "name": "Cy",
        "kind": "customer",
    }
    customer = client.get("/api/v1/customers/c9", headers=keys.h("operator")).json()
    assert customer["protected"] is True


def test_gateway_secrets_are_shown_once_and_stored_hashed(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    r = post(client, keys, "gateways", {"id": "gw-7"})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"id", "command_key", "mqtt_username", "mqtt_password"}
    assert len(bytes.fromhex(body["command_key"])) == 32
    assert body["mqtt_username"] == "gw-7"
    with session_scope(api_engine, write=False) as session:
        row = session.get(Gateway, "gw-7")
        assert row is not None
        assert body["mqtt_password"] not in row.mqtt_password_hash
        assert verify_password(body["mqtt_password"], row.mqtt_password_hash)
    again = client.get("/api/v1/gateways/gw-7", headers=keys.h("admin")).json()
    assert "mqtt_password" not in again
    assert "command_key" not in again


DUPLICATES: list[tuple[str, dict[str, Any]]] = [
    ("providers", {"id": "gen", "name": "G", "tier": "generation"}),
    (
        "tariffs",
        {"id": "t1", "currency": "USD", "components": [{"provider": "gen", "per_kwh": "1"}]},
    ),
    ("customers", {"id": "c1", "name": "Again"}),
    ("customers", {"id": "sponsor", "name": "Clashes with an account"}),
    ("accounts", {"id": "c1", "name": "Again"}),
    ("gateways", {"id": "gw1"}),
    ("meters", {"id": "m1", "gateway": "gw1", "customer": "c1", "tariff": "t1"}),
]


@pytest.mark.parametrize(
    ("path", "body"), DUPLICATES, ids=[f"{p}-{b['id']}" for p, b in DUPLICATES]
)
def test_duplicate_ids_conflict(shared: Shared, path: str, body: Any) -> None:
    assert post(shared.client, shared.keys, path, body).status_code == 409


def tariff(currency: str, provider: str, per_kwh: str) -> dict[str, Any]:
    return {
        "id": "t9",
        "currency": currency,
        "components": [{"provider": provider, "per_kwh": per_kwh}],
    }


BAD = [
    ("providers", {"id": "p", "name": "P", "tier": "wholesale"}, "tier"),
    ("providers", {"id": "bad id", "name": "P", "tier": "retail"}, "id"),
    ("providers", {"id": "p", "name": "", "tier": "retail"}, "name"),
    ("providers", {"id": "p", "name": "P", "tier": "retail", "extra": 1}, "extra"),
    ("customers", {"id": "c5", "name": "C", "alternate_account": "nope"}, "alternate_account"),
    ("customers", {"id": "c5", "name": "C", "protected": "maybe"}, "protected"),
    ("accounts", {"id": "a:b", "name": "A"}, "id"),
    ("accounts", {"id": "a", "name": "A", "kind": "provider"}, "kind"),
    ("gateways", {"id": "gw/2"}, "id"),
    ("gateways", {}, "id"),
    ("gateways", {"id": "smsa-hub"}, "id"),  # the hub's MQTT user (hub/gateways.py)
    ("meters", {"id": "m9", "gateway": "nope", "customer": "c1", "tariff": "t1"}, "gateway"),
    ("meters", {"id": "m9", "gateway": "gw1", "customer": "nope", "tariff": "t1"}, "customer"),
    ("meters", {"id": "m9", "gateway": "gw1", "customer": "c1", "tariff": "nope"}, "tariff"),
    ("meters", {"id": "m9", "gateway": "gw1", "customer": "c1", "tariff": "t1", "service": "air"},
     "service"),
    ("tariffs", tariff("EUR", "gen", "1"), "currency"),
    ("tariffs", tariff("USD", "zz", "1"), "components.0.provider"),
    ("tariffs", tariff("USD", "gen", "-1"), "components.0.per_kwh"),
    ("tariffs", {"id": "t9", "currency": "USD", "components": []}, "components"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "field"), BAD, ids=[f"{p}-{f}" for p, _, f in BAD])
def test_bad_bodies_name_the_field(shared: Shared, path: str, body: Any, field: str) -> None:
    r = post(shared.client, shared.keys, path, body)
    assert r.status_code == 422, r.text
    assert field in error_fields(r), r.json()


def test_tariff_round_trip(client: httpx.Client, keys: Keys) -> None:
    body = {
        "id": "tou",
        "currency": "USD",
        "timezone": "Africa/Nairobi",
        "components": [
            {"provider": "gen", "tou": [{"start": "22:00", "end": "06:00", "price": "0.05"}],
             "per_kwh": "0.12"},
            {"provider": "ret", "per_day": "0.30"},
        ],
    }  # fmt: skip
    r = post(client, keys, "tariffs", body)
    assert r.status_code == 201, r.text
    got = client.get("/api/v1/tariffs/tou", headers=keys.h("operator")).json()
    assert got["version"] == 1
    assert [c["provider"] for c in got["components"]] == ["gen", "ret"]


def test_tariff_versions(client: httpx.Client, keys: Keys) -> None:
    h = keys.h("admin")
    body = {"currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.20"}]}
    r = client.post("/api/v1/tariffs/t1/versions", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    assert r.json()["components"] == [{"provider": "gen", "per_kwh": "0.20"}]
    assert client.get("/api/v1/tariffs/t1", headers=h).json()["version"] == 2
    early = {**body, "valid_from": "2000-01-01T00:00:00Z"}
    r = client.post("/api/v1/tariffs/t1/versions", json=early, headers=h)
    assert r.status_code == 422
    assert error_fields(r) == ["valid_from"]
    r = client.post(
        "/api/v1/tariffs/t1/versions", json={**body, "timezone": "Mars/Base"}, headers=h
    )
    assert error_fields(r) == ["timezone"]
    r = client.post("/api/v1/tariffs/t1/versions", json={**body, "currency": "EUR"}, headers=h)
    assert error_fields(r) == ["currency"]
    bad = {"currency": "USD", "components": [{"provider": "nobody", "per_kwh": "1"}]}
    r = client.post("/api/v1/tariffs/t1/versions", json=bad, headers=h)
    assert error_fields(r) == ["components.0.provider"]
    assert client.post("/api/v1/tariffs/nope/versions", json=body, headers=h).status_code == 404


def test_a_version_starts_after_usage_already_rated(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    """Usage from a gateway whose clock is ahead ends after "now": a new version may not start
    before it, or that usage would be rated with a version no longer in force at its end."""
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    lines = [("c1", -15), ("provider:gen", 15)]
    start = ahead - timedelta(seconds=10)
    posting = UsagePosting("m1", 1, 0, 1000, lines, "USD", interval_start=start, interval_end=ahead)
    run_tx(api_engine, lambda s: ledger.post_usage_batch(s, [posting]))
    h = keys.h("admin")
    body = {"currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.20"}]}
    soon = {**body, "valid_from": (ahead - timedelta(minutes=5)).isoformat()}
    r = client.post("/api/v1/tariffs/t1/versions", json=soon, headers=h)
    assert r.status_code == 422
    assert error_fields(r) == ["valid_from"]
    r = client.post("/api/v1/tariffs/t1/versions", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert datetime.fromisoformat(r.json()["valid_from"]) > ahead
    r = client.post("/api/v1/tariffs/t1/versions", json=body, headers=h)
    assert r.status_code == 201, r.text  # the next one starts after the last start
