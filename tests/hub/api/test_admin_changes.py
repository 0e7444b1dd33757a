"""The admin API changes what it created, audited (issue 15, item 5): PATCH /customers/{id}
(its credit state reaches its meters) and DELETE /api-keys/{id}, through a real server."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import Engine, text

from hub.db import session_scope
from hub.keys import find_key
from protocol.signing import verify
from tests.hub.api.conftest import Keys, new_key
from tests.hub.api.helpers import error_fields


def credit_commands(client: httpx.Client, keys: Keys, meter: str) -> list[dict[str, object]]:
    r = client.get(f"/api/v1/meters/{meter}/commands", headers=keys.h("operator"))
    assert r.status_code == 200, r.text
    return [c for c in r.json() if c["action"] == "credit"]


def test_patching_a_customer_changes_audits_and_reaches_its_meters(
    client: httpx.Client, keys: Keys
) -> None:
    before = len(credit_commands(client, keys, "m1"))
    rules = {"low_credit": [300], "reconnect_above": 150, "emergency_credit": 200}
    r = client.patch("/api/v1/customers/c1", headers=keys.h("admin"),
                     json={"name": "Ada L.", "protected": True, "credit_rules": rules})  # fmt: skip
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["protected"], body["alternate_account"]) == (
        "Ada L.",
        True,
        "sponsor",
    )
    assert body["credit_rules"]["reconnect_above"] == 150
    assert client.get("/api/v1/customers/c1", headers=keys.h("operator")).json() == body
    assert len(credit_commands(client, keys, "m1")) == before + 1  # the new rules, queued
    assert len(credit_commands(client, keys, "m2")) == 0  # c2's meter is not touched

    r = client.patch("/api/v1/customers/c1", headers=keys.h("admin"),
                     json={"alternate_account": None})  # fmt: skip
    assert r.status_code == 200 and r.json()["alternate_account"] is None
    same = client.patch("/api/v1/customers/c1", headers=keys.h("admin"), json={"name": "Ada L."})
    assert same.status_code == 200  # nothing changed: nothing audited

    history = client.get("/api/v1/customers/c1/history", headers=keys.h("operator")).json()
    assert [list(h["changes"]) for h in history] == [
        ["alternate_account"],
        ["name", "protected", "credit_rules"],
    ]
    first = history[1]["changes"]
    assert first["name"] == {"from": "Ada", "to": "Ada L."}
    assert first["protected"] == {"from": False, "to": True}
    assert first["credit_rules"]["from"] == {}
    assert first["credit_rules"]["to"]["emergency_credit"] == 200
    assert history[0]["changes"]["alternate_account"] == {"from": "sponsor", "to": None}
    assert all(h["key_id"] is not None for h in history)
    assert client.get("/api/v1/customers/c2/history", headers=keys.h("operator")).json() == []
    events = client.get("/api/v1/events", params={"kind": "customer_changed"},
                        headers=keys.h("operator")).json()  # fmt: skip
    assert len(events) == 2 and events[0]["data"]["by"] == "admin"


def test_a_customer_moves_to_postpaid_billing_audited(client: httpx.Client, keys: Keys) -> None:
    before = len(credit_commands(client, keys, "m1"))
    r = client.patch("/api/v1/customers/c1", headers=keys.h("admin"), json={"billing": "postpaid"})
    assert r.status_code == 200 and r.json()["billing"] == "postpaid", r.text
    assert client.get("/api/v1/customers/c1", headers=keys.h("operator")).json()["billing"] == (
        "postpaid"
    )
    assert len(credit_commands(client, keys, "m1")) == before  # the gateway's rules are unchanged
    history = client.get("/api/v1/customers/c1/history", headers=keys.h("operator")).json()
    assert [h["changes"] for h in history] == [{"billing": {"from": "prepaid", "to": "postpaid"}}]


def test_a_bad_patch_is_refused_and_changes_nothing(client: httpx.Client, keys: Keys) -> None:
    admin = keys.h("admin")
    cases = [
        ({"alternate_account": "nope"}, "alternate_account"),
        ({"alternate_account": "c1"}, "alternate_account"),
        ({"name": None}, "name"),
        ({"credit_rules": {"low_credit": [1], "grace": 3}}, "credit_rules"),
        ({"colour": "red"}, "colour"),
        ({"billing": "weekly"}, "billing"),
        ({"billing": None}, "billing"),
    ]
    for body, field in cases:
        r = client.patch("/api/v1/customers/c1", headers=admin, json=body)
        assert r.status_code == 422, (body, r.text)
        assert any(field in f for f in error_fields(r)) or field in r.text, (body, r.text)
    assert client.patch("/api/v1/customers/nope", headers=admin, json={}).status_code == 404
    for role in ("operator", "customer"):
        r = client.patch("/api/v1/customers/c1", headers=keys.h(role), json={"name": "X"})
        assert r.status_code == 403
    assert client.get("/api/v1/customers/c1/history", headers=keys.h("customer")).status_code == 403
    assert client.get("/api/v1/customers/c1/history", headers=keys.h("operator")).json() == []
    assert client.get("/api/v1/customers/c1", headers=keys.h("operator")).json()["name"] == "Ada"


def test_an_admin_revokes_a_key_once_audited(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    victim = new_key(api_engine, "customer", "c2")
    victim_h = {"Authorization": f"Bearer {victim}"}
    assert client.get("/api/v1/accounts/c2", headers=victim_h).status_code == 200
    ids = client.get(
        "/api/v1/events", params={"kind": "api_key_revoked"}, headers=keys.h("operator")
    )
    assert ids.json() == []
    key_id = key_id_of(api_engine, victim)
    for role in ("operator", "customer"):
        r = client.delete(f"/api/v1/api-keys/{key_id}", headers=keys.h(role))
        assert r.status_code == 403
    assert client.delete(f"/api/v1/api-keys/{key_id}", headers=keys.h("admin")).status_code == 204
    assert client.get("/api/v1/accounts/c2", headers=victim_h).status_code == 401
    assert client.delete(f"/api/v1/api-keys/{key_id}", headers=keys.h("admin")).status_code == 204
    assert client.delete("/api/v1/api-keys/999999", headers=keys.h("admin")).status_code == 404
    assert client.delete("/api/v1/api-keys/x", headers=keys.h("admin")).status_code == 422
    events = client.get("/api/v1/events", params={"kind": "api_key_revoked"},
                        headers=keys.h("operator")).json()  # fmt: skip
    (event,) = events  # the second revocation changed nothing
    assert event["data"]["api_key"] == str(key_id)
    assert event["data"]["changes"] == {"revoked": {"from": False, "to": True}}
    assert event["data"]["key_id"] == key_id_of(api_engine, keys.admin)


def key_id_of(engine: Engine, key: str) -> int:
    with session_scope(engine, write=False) as session:
        row = find_key(session, key)
        assert row is not None and row.id is not None
        return row.id


def test_rotating_a_gateway_queues_the_new_credentials_signed_with_the_old_key(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    admin = keys.h("admin")
    old = gateway_keys(api_engine, "gw1")[0]
    for role in ("operator", "customer"):
        assert client.post("/api/v1/gateways/gw1/rotate", headers=keys.h(role)).status_code == 403
    assert client.post("/api/v1/gateways/nope/rotate", headers=admin).status_code == 404
    r = client.post("/api/v1/gateways/gw1/rotate", headers=admin)
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["id"], body["mqtt_username"], body["status"]) == ("gw1", "gw1", "queued")
    assert gateway_keys(api_engine, "gw1") == (old, body["command_key"])  # old until the ack
    command = queued_payload(api_engine, body["command_id"])
    assert command["action"] == "rotate" and verify(command, old)
    assert command["params"] == {"command_key": body["command_key"],
                                 "mqtt_password": body["mqtt_password"]}  # fmt: skip
    again = client.post("/api/v1/gateways/gw1/rotate", headers=admin)
    assert again.status_code == 409 and body["command_id"] in again.text
    assert client.post("/api/v1/gateways", json={"id": "gw2"}, headers=admin).status_code == 201
    assert client.post("/api/v1/gateways/gw2/rotate", headers=admin).status_code == 409  # no meter
    events = client.get("/api/v1/events", params={"kind": "gateway_rotated"},
                        headers=keys.h("operator")).json()  # fmt: skip
    (event,) = events
    assert event["data"]["gateway"] == "gw1" and event["data"]["key_id"] is not None
    assert body["command_key"] not in json.dumps(event) and old not in json.dumps(event)


def gateway_keys(engine: Engine, gateway: str) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT command_key, next_command_key FROM gateways WHERE id = :g"), {"g": gateway}
        ).one()
    return str(row[0]), row[1]


def queued_payload(engine: Engine, command_id: str) -> dict[str, object]:
    with engine.connect() as conn:
        payload = conn.execute(
            text("SELECT payload FROM commands WHERE id = :c"), {"c": command_id}
        ).scalar_one()
    found: dict[str, object] = json.loads(payload)
    return found
