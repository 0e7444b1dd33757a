"""POST /customers with ``credit_rules``: stored where credit control and the gateway read them,
shown back, and refused with 422 naming the field when wrong (the API under a real uvicorn)."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine, select

from hub.control.credit_state import credit_rules
from hub.control.rules import Policy
from hub.db import read_tx
from hub.ledger.sql import customers
from tests.hub.api.conftest import Keys
from tests.hub.api.helpers import error_fields

RULES = {
    "low_credit": [500, 100],
    "grace_s": 900,
    "emergency_credit": 500,
    "reconnect_above": 200,
    "friendly": [{"days": [0, 1, 2, 3, 4], "start": "16:00", "end": "08:00"}],
    "holidays": ["2026-12-25"],
    "alternate_draw": 300,
    "alternate_limit": 1000,
    "debt_recovery_share": "0.25",
}


def test_customer_credit_rules_are_stored_and_shown(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    body = {"id": "c7", "name": "Cy", "alternate_account": "sponsor", "credit_rules": RULES}
    r = client.post("/api/v1/customers", json=body, headers=keys.h("admin"))
    assert r.status_code == 201, r.text
    shown = r.json()["credit_rules"]
    assert shown["low_credit"] == [500, 100] and shown["alternate_draw"] == 300
    assert shown["debt_recovery_share"] == "0.25"
    got = client.get("/api/v1/customers/c7", headers=keys.h("operator")).json()
    assert got["credit_rules"] == shown
    with read_tx(api_engine) as conn:
        flags = conn.execute(select(customers.c.flags).where(customers.c.id == "c7")).scalar_one()
    rules = credit_rules(flags, False)  # what the gateway is sent
    assert (rules.grace_s, rules.emergency_credit, rules.reconnect_above) == (900, 500, 200)
    assert rules.friendly[0].start.hour == 16
    policy = Policy.from_flags(flags)  # what only the hub uses
    assert (policy.alternate_draw, policy.alternate_limit) == (300, 1000)


def test_customer_without_rules_gets_defaults(client: httpx.Client, keys: Keys) -> None:
    r = client.post("/api/v1/customers", json={"id": "c8", "name": "D"}, headers=keys.h("admin"))
    assert r.status_code == 201 and r.json()["credit_rules"] == {}


def test_bad_credit_rules_name_the_field(client: httpx.Client, keys: Keys) -> None:
    for rules, field in (
        ({"grace_s": -5}, "grace_s"),
        ({"debt_recovery_share": "1.5"}, "debt_recovery_share"),
        ({"alternate_draw": "lots"}, "alternate_draw"),
        ({"surprise": True}, "surprise"),
    ):
        body = {"id": "c9", "name": "E", "credit_rules": rules}
        r = client.post("/api/v1/customers", json=body, headers=keys.h("admin"))
        assert r.status_code == 422, r.text
        assert any(field in f for f in error_fields(r)), (field, error_fields(r))
    assert client.get("/api/v1/customers/c9", headers=keys.h("operator")).status_code == 404
