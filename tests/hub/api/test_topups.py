"""Top-ups: idempotency (sequential and 20 concurrent requests), validation of amounts and
bodies (422 naming the field, ledger unchanged)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from hub.app import create_app
from hub.settings import HubSettings
from tests.hub.api.conftest import Keys, LiveServer, Shared, serving
from tests.hub.api.helpers import error_fields, ledger_state

TOPUP = "/api/v1/accounts/c1/topups"


def topup(client: httpx.Client, keys: Keys, body: Any, key: str | None = "k1") -> httpx.Response:
    headers = keys.h("admin")  # customer keys may not top up by default (test below)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post(TOPUP, json=body, headers=headers)


def balance(client: httpx.Client, keys: Keys, account: str = "c1") -> str:
    return str(client.get(f"/api/v1/accounts/{account}", headers=keys.h("admin")).json()["balance"])


def test_topup_credits_customer_and_debits_clearing(client: httpx.Client, keys: Keys) -> None:
    r = topup(client, keys, {"amount": "12.50", "reference": "cash 1"})
    assert r.status_code == 201, r.text
    assert r.json()["amount"] == "12.50"
    assert r.json()["balance"] == "12.50"
    assert balance(client, keys) == "12.50"
    assert balance(client, keys, "clearing:USD") == "-12.50"
    lines = client.get("/api/v1/accounts/c1/entries", headers=keys.h("customer")).json()
    assert [(i["kind"], i["amount"], i["entry_id"]) for i in lines["items"]] == [
        ("topup", "12.50", r.json()["id"])
    ]
    assert client.get("/api/v1/ledger/check", headers=keys.h("operator")).json()["ok"] is True


def test_same_key_same_body_same_answer(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    first = topup(client, keys, {"amount": "3.00", "reference": "a"})
    state = ledger_state(api_engine)
    again = topup(client, keys, {"amount": "3.00", "reference": "a"})
    assert again.status_code == 201
    assert again.json() == first.json()
    assert ledger_state(api_engine) == state
    # Another key is another top-up; the first key still answers its own result.
    assert (
        topup(client, keys, {"amount": "3.00", "reference": "a"}, key="k2").json()["balance"]
        == "6.00"
    )
    assert topup(client, keys, {"amount": "3.00", "reference": "a"}).json() == first.json()


@pytest.mark.parametrize(
    "other", [{"amount": "3.01", "reference": "a"}, {"amount": "3.00", "reference": "b"}]
)
def test_same_key_other_body_conflicts(
    client: httpx.Client, keys: Keys, api_engine: Engine, other: dict[str, str]
) -> None:
    topup(client, keys, {"amount": "3.00", "reference": "a"})
    state = ledger_state(api_engine)
    r = topup(client, keys, other)
    assert r.status_code == 409, r.text
    assert ledger_state(api_engine) == state


def test_twenty_concurrent_identical_topups_move_money_once(
    live_server: LiveServer, keys: Keys, api_engine: Engine
) -> None:
    headers = {**keys.h("admin"), "Idempotency-Key": "burst-1"}
    body = {"amount": "7.25", "reference": "burst"}

    def send(_: int) -> tuple[int, Any]:
        with httpx.Client(base_url=live_server.url, timeout=30) as http:
            r = http.post(TOPUP, json=body, headers=headers)
            return r.status_code, r.json()

    before_entries, _ = ledger_state(api_engine)
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    assert {status for status, _ in answers} == {201}
    assert len({str(a) for _, a in answers}) == 1, answers
    entries, balances = ledger_state(api_engine)
    assert entries == before_entries + 1
    assert balances["c1"] == 725
    assert balances["clearing:USD"] == -725


BAD_BODIES: list[tuple[Any, str]] = [
    ({"amount": "-5.00", "reference": "r"}, "amount"),
    ({"amount": "0", "reference": "r"}, "amount"),
    ({"amount": "0.00", "reference": "r"}, "amount"),
    ({"amount": "1.005", "reference": "r"}, "amount"),
    ({"amount": "500.01", "reference": "r"}, "amount"),
    ({"amount": "99999999999999999999", "reference": "r"}, "amount"),
    ({"amount": "1e3", "reference": "r"}, "amount"),
    ({"amount": 5, "reference": "r"}, "amount"),
    ({"amount": 5.5, "reference": "r"}, "amount"),
    ({"amount": None, "reference": "r"}, "amount"),
    ({"amount": ["1"], "reference": "r"}, "amount"),
    ({"amount": " 1.00", "reference": "r"}, "amount"),
    ({"amount": "NaN", "reference": "r"}, "amount"),
    ({"reference": "r"}, "amount"),
    ({"amount": "1.00"}, "reference"),
    ({"amount": "1.00", "reference": ""}, "reference"),
    ({"amount": "1.00", "reference": 7}, "reference"),
    ({"amount": "1.00", "reference": "r", "account": "c2"}, "account"),
    ({"amount": "1.00", "reference": "r", "balance": "100"}, "balance"),
    ({"amount": "1.00", "reference": "r", "currency": "EUR"}, "currency"),
    ({"amount": "1.00", "reference": "r", "currency": "usd"}, "currency"),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[str(b) for b, _ in BAD_BODIES])
def test_bad_bodies_are_422_naming_the_field(shared: Shared, body: Any, field: str) -> None:
    client, keys, api_engine = shared.client, shared.keys, shared.engine
    state = ledger_state(api_engine)
    r = topup(client, keys, body, key=f"bad-{field}")
    assert r.status_code == 422, r.text
    assert field in error_fields(r), r.json()
    assert ledger_state(api_engine) == state


def test_not_json_and_missing_key_are_422(shared: Shared) -> None:
    client, keys, api_engine = shared.client, shared.keys, shared.engine
    state = ledger_state(api_engine)
    r = client.post(
        TOPUP,
        content=b"{not json",
        headers={**keys.h("admin"), "Idempotency-Key": "x", "Content-Type": "application/json"},
    )
    assert r.status_code == 422
    r = topup(client, keys, {"amount": "1.00", "reference": "r"}, key=None)
    assert r.status_code == 422
    assert "Idempotency-Key" in error_fields(r)[0]
    r = topup(client, keys, {"amount": "1.00", "reference": "r"}, key="x" * 101)
    assert r.status_code == 422
    assert ledger_state(api_engine) == state


def test_maximum_is_accepted_and_system_accounts_refuse_topups(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    assert topup(client, keys, {"amount": "500", "reference": "max"}).status_code == 201
    state = ledger_state(api_engine)
    r = client.post(
        "/api/v1/accounts/provider:gen/topups",
        json={"amount": "1.00", "reference": "r"},
        headers={**keys.h("admin"), "Idempotency-Key": "p"},
    )
    assert r.status_code == 422
    assert ledger_state(api_engine) == state
    # A sponsor (stand-alone) account can be topped up by an admin.
    r = client.post(
        "/api/v1/accounts/sponsor/topups",
        json={"amount": "20.00", "reference": "grant"},
        headers={**keys.h("admin"), "Idempotency-Key": "s"},
    )
    assert r.status_code == 201
    assert r.json()["balance"] == "20.00"


def test_customer_keys_may_not_top_up_by_default(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    """Issue 14, item 8: a customer key could top up its own account with no payment behind
    it, up to MAX_TOPUP a request. SMSA_HUB_CUSTOMER_TOPUPS is off by default."""
    state = ledger_state(api_engine)
    r = client.post(
        TOPUP,
        json={"amount": "500.00", "reference": "free money"},
        headers={**keys.h("customer"), "Idempotency-Key": "free"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "ForbiddenError"
    assert "SMSA_HUB_CUSTOMER_TOPUPS" in r.json()["detail"]
    assert len(r.json()["detail"].splitlines()) == 1
    assert ledger_state(api_engine) == state
    assert topup(client, keys, {"amount": "5.00", "reference": "cash"}).status_code == 201


def test_customer_keys_top_up_their_own_account_when_enabled(
    api_settings: HubSettings, api_engine: Engine, keys: Keys
) -> None:
    settings = api_settings.model_copy(update={"customer_topups": True})
    with (
        serving(create_app(settings, api_engine)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        body = {"amount": "5.00", "reference": "card"}
        r = http.post(TOPUP, json=body, headers={**keys.h("customer"), "Idempotency-Key": "own"})
        assert r.status_code == 201, r.text
        assert r.json()["balance"] == "5.00"
        other = {**keys.h("customer"), "Idempotency-Key": "theirs"}
        assert http.post("/api/v1/accounts/c2/topups", json=body, headers=other).status_code == 403
