"""Every endpoint for every role: allowed, 401 without or with a bad key, 403 for the wrong
role or another customer's account."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import select

from hub.db import run_tx, session_scope
from hub.keys import hash_key, revoke_key
from hub.models import ApiKey
from tests.hub.api.conftest import Keys, Shared
from tests.hub.api.helpers import ledger_state

ROLES = ("admin", "operator", "customer", "other")
_ids = itertools.count(1)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    allowed: frozenset[str]
    ok: int = 200
    body: Any = None  # a callable (unique ids per call) or a value
    headers: dict[str, str] = field(default_factory=dict)

    def make_body(self) -> Any:
        return self.body() if callable(self.body) else self.body


def _uid(prefix: str) -> str:
    return f"{prefix}{next(_ids)}"


PERIOD = "start=2020-01-01T00:00:00Z&end=2100-01-01T00:00:00Z"
ADMIN = frozenset({"admin"})
STAFF = frozenset({"admin", "operator"})
OWNER_READ = frozenset({"admin", "operator", "customer"})

CALLS = [
    Call("POST", "/api/v1/providers", ADMIN, 201,
         lambda: {"id": _uid("p"), "name": "P", "tier": "distribution"}),
    Call("GET", "/api/v1/providers", STAFF),
    Call("GET", "/api/v1/providers/gen", STAFF),
    Call("GET", f"/api/v1/providers/gen/statement?{PERIOD}", STAFF),
    Call("POST", "/api/v1/tariffs", ADMIN, 201,
         lambda: {"id": _uid("t"), "currency": "USD",
                  "components": [{"provider": "gen", "per_kwh": "0.2"}]}),
    Call("GET", "/api/v1/tariffs/t1", STAFF),
    Call("POST", "/api/v1/tariffs/t1/versions", ADMIN, 201,
         {"currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.3"}]}),
    Call("POST", "/api/v1/customers", ADMIN, 201, lambda: {"id": _uid("c"), "name": "C"}),
    Call("GET", "/api/v1/customers/c1", STAFF),
    Call("POST", "/api/v1/accounts", ADMIN, 201, lambda: {"id": _uid("a"), "name": "A"}),
    Call("POST", "/api/v1/gateways", ADMIN, 201, lambda: {"id": _uid("g")}),
    Call("GET", "/api/v1/gateways/gw1", STAFF),
    Call("POST", "/api/v1/meters", ADMIN, 201,
         lambda: {"id": _uid("m"), "gateway": "gw1", "customer": "c1", "tariff": "t1"}),
    Call("GET", "/api/v1/meters", STAFF),
    Call("GET", "/api/v1/meters/m1", STAFF),
    Call("POST", "/api/v1/meters/m1/disconnect", STAFF, 202, {"reason": "test"}),
    Call("POST", "/api/v1/meters/m1/reconnect", STAFF, 202, {"reason": "test"}),
    Call("POST", "/api/v1/accounts/c1/topups", ADMIN, 201,  # customer: CUSTOMER_TOPUPS
         {"amount": "1.00", "reference": "r"}),
    Call("GET", "/api/v1/accounts/c1", OWNER_READ),
    Call("GET", "/api/v1/accounts/c1/entries", OWNER_READ),
    Call("GET", "/api/v1/events", STAFF),
    Call("GET", "/api/v1/events?kind=disconnect&meter=m1&since=2020-01-01T00:00:00Z", STAFF),
    Call("POST", "/api/v1/events/stream-token", STAFF),
    Call("GET", "/api/v1/ledger/check", STAFF),
]  # fmt: skip


def send(client: httpx.Client, call: Call, headers: dict[str, str]) -> httpx.Response:
    hdrs = dict(headers)
    if call.path.endswith("/topups"):
        hdrs["Idempotency-Key"] = _uid("idem-")
    body = call.make_body()
    return client.request(call.method, call.path, json=body, headers=hdrs)


@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c.method} {c.path.split('?')[0]}")
def test_every_role(shared: Shared, call: Call) -> None:
    client, keys = shared.client, shared.keys
    for role in ROLES:
        r = send(client, call, keys.h(role))
        if role in call.allowed:
            assert r.status_code == call.ok, (role, r.text)
        else:
            assert r.status_code == 403, (role, r.text)
    assert send(client, call, {}).status_code == 401
    bad = {"Authorization": "Bearer smsa_not-a-real-key"}
    r = send(client, call, bad)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert send(client, call, {"Authorization": "Basic abc"}).status_code == 401


def test_event_stream_roles(shared: Shared) -> None:
    client, keys = shared.client, shared.keys
    for role in ROLES:
        with client.stream("GET", "/api/v1/events/stream", headers=keys.h(role)) as r:
            assert r.status_code == (200 if role in STAFF else 403), role
            if r.status_code == 200:
                assert r.headers["content-type"].startswith("text/event-stream")
    with client.stream("GET", "/api/v1/events/stream") as r:
        assert r.status_code == 401


def test_customer_cannot_touch_another_account(shared: Shared) -> None:
    client, keys, api_engine = shared.client, shared.keys, shared.engine
    before = ledger_state(api_engine)
    h = {**keys.h("customer"), "Idempotency-Key": "x1"}
    r = client.post("/api/v1/accounts/c2/topups", json={"amount": "5", "reference": "x"}, headers=h)
    assert r.status_code == 403
    assert client.get("/api/v1/accounts/c2", headers=keys.h("customer")).status_code == 403
    assert client.get("/api/v1/accounts/c2/entries", headers=keys.h("customer")).status_code == 403
    # Not even whether an account exists leaks to a customer key.
    assert client.get("/api/v1/accounts/nope", headers=keys.h("customer")).status_code == 403
    assert client.get("/api/v1/accounts/sponsor", headers=keys.h("customer")).status_code == 403
    assert ledger_state(api_engine) == before


def test_unknown_ids_are_404(shared: Shared) -> None:
    client, keys = shared.client, shared.keys
    h = keys.h("admin")
    for path in ("accounts/nope", "accounts/nope/entries", "meters/nope", "providers/nope",
                 "tariffs/nope", "customers/nope", "gateways/nope"):  # fmt: skip
        assert client.get(f"/api/v1/{path}", headers=h).status_code == 404, path
    r = client.post("/api/v1/meters/nope/disconnect", json={"reason": "x"}, headers=h)
    assert r.status_code == 404
    r = client.post(
        "/api/v1/accounts/nope/topups",
        json={"amount": "1.00", "reference": "r"},
        headers={**h, "Idempotency-Key": "k"},
    )
    assert r.status_code == 404


def test_revoked_key_is_refused(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    assert client.get("/api/v1/meters", headers=keys.h("operator")).status_code == 200
    run_tx(api_engine, lambda s: revoke_key(s, keys.operator))
    assert client.get("/api/v1/meters", headers=keys.h("operator")).status_code == 401


def test_public_endpoints(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"ok": True, "db": True, "mqtt": None}
    r = client.get("/metrics")
    assert r.status_code == 200
    assert "smsa_records_ingested " in r.text
    assert "# TYPE smsa_disconnects gauge" in r.text
    spec = client.get("/openapi.json").json()
    assert "/api/v1/accounts/{account_id}/topups" in spec["paths"]
    assert client.get("/").status_code == 200


def test_keys_are_stored_hashed_and_last_use_recorded(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    with session_scope(api_engine, write=False) as session:
        rows = session.exec(select(ApiKey)).all()
        assert keys.operator not in {r.key_hash for r in rows}
        row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(keys.operator))).one()
        assert row.last_used_at is None
        key_id = row.id
    assert client.get("/api/v1/meters", headers=keys.h("operator")).status_code == 200
    with session_scope(api_engine, write=False) as session:
        used = session.get(ApiKey, key_id)
        assert used is not None
        assert used.last_used_at is not None
