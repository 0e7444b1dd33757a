"""Offline top-up tokens through the API (contract section 7): vend debits the account into
``tokens:USD`` once per key, cancel refunds once, a reported redemption settles once, the
meter's secret never appears in an answer or a log, and the ledger check stays ok."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import Engine, select

from hub.db import write_tx
from hub.models import MeterTokenKey, table
from hub.tokens.settle import settle_token_event
from hub.tokens.store import T_TOKENS, setup
from tests.hub.api.conftest import Keys
from tests.hub.api.helpers import ledger_state

TOKENS = "/api/v1/accounts/c1/tokens"


def fund(client: httpx.Client, keys: Keys, amount: str = "50.00") -> None:
    r = client.post("/api/v1/accounts/c1/topups", json={"amount": amount, "reference": "cash"},
                    headers={**keys.h("admin"), "Idempotency-Key": f"fund-{amount}"})  # fmt: skip
    assert r.status_code == 201, r.text


def vend(
    client: httpx.Client, keys: Keys, body: dict[str, str], key: str = "t1", role: str = "customer"
) -> httpx.Response:
    return client.post(TOKENS, json=body, headers={**keys.h(role), "Idempotency-Key": key})


def balance(client: httpx.Client, keys: Keys, account: str = "c1") -> str:
    return str(client.get(f"/api/v1/accounts/{account}", headers=keys.h("admin")).json()["balance"])


def ledger_ok(client: httpx.Client, keys: Keys) -> bool:
    return bool(client.get("/api/v1/ledger/check", headers=keys.h("operator")).json()["ok"])


def secret(engine: Engine, meter: str = "m1") -> tuple[str, int]:
    with engine.connect() as conn:
        row = conn.execute(select(table(MeterTokenKey)).where(
            table(MeterTokenKey).c.meter_id == meter)).one()  # fmt: skip
    return row.secret_key, int(row.starting_code)


def test_vend_moves_money_into_token_clearing_once(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    fund(client, keys)
    r = vend(client, keys, {"amount": "12.50", "meter": "m1"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert len(body["token"]) == 12 and body["token"].isdigit()
    assert (body["amount"], body["meter"], body["status"]) == ("12.50", "m1", "vended")
    assert balance(client, keys) == "37.50"
    assert balance(client, keys, "tokens:USD") == "12.50"
    state = ledger_state(api_engine)
    again = vend(client, keys, {"amount": "12.50", "meter": "m1"})
    assert again.status_code == 201 and again.json() == body
    assert ledger_state(api_engine) == state
    conflict = vend(client, keys, {"amount": "12.00", "meter": "m1"})
    assert conflict.status_code == 409, conflict.text
    assert ledger_state(api_engine) == state
    assert ledger_ok(client, keys)


def test_refusals_move_nothing(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    fund(client, keys, "5.00")
    state = ledger_state(api_engine)
    assert vend(client, keys, {"amount": "6.00", "meter": "m1"}).status_code == 409  # floor
    assert vend(client, keys, {"amount": "1.00", "meter": "m2"}).status_code == 422  # not c1's
    assert vend(client, keys, {"amount": "1.00", "meter": "nope"}).status_code == 404
    assert vend(client, keys, {"amount": "0", "meter": "m1"}).status_code == 422
    assert vend(client, keys, {"amount": "10000.00", "meter": "m1"}).status_code == 422
    r = client.post(TOKENS, json={"amount": "1.00", "meter": "m1"},
                    headers={**keys.h("other"), "Idempotency-Key": "x"})  # fmt: skip
    assert r.status_code == 403
    r = client.post(TOKENS, json={"amount": "1.00", "meter": "m1"}, headers=keys.h("customer"))
    assert r.status_code == 422  # no Idempotency-Key
    assert ledger_state(api_engine) == state


def test_settled_once_however_often_reported(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    fund(client, keys)
    token = vend(client, keys, {"amount": "10.00", "meter": "m1"}).json()
    count = client.get(f"/api/v1/tokens/{token['id']}", headers=keys.h("operator")).json()
    assert count["status"] == "vended"
    outcomes = []
    for _ in range(3):
        with write_tx(api_engine) as conn:
            n = conn.execute(select(T_TOKENS.c["count"]).where(T_TOKENS.c.id == token["id"]))
            outcomes.append(settle_token_event(conn, "m1", {"count": n.scalar_one(),
                                                            "amount": 1000}))  # fmt: skip
    assert outcomes == ["settled", "again", "again"]
    assert balance(client, keys) == "50.00"
    assert balance(client, keys, "tokens:USD") == "0.00"
    r = client.post(f"/api/v1/tokens/{token['id']}/cancel", headers=keys.h("operator"))
    assert r.status_code == 409
    assert ledger_ok(client, keys)


def test_cancel_refunds_once_and_a_late_redemption_moves_nothing(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    fund(client, keys)
    token = vend(client, keys, {"amount": "10.00", "meter": "m1"}).json()
    assert client.post(f"/api/v1/tokens/{token['id']}/cancel",
                       headers=keys.h("customer")).status_code == 403  # fmt: skip
    first = client.post(f"/api/v1/tokens/{token['id']}/cancel", headers=keys.h("operator"))
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "cancelled"
    again = client.post(f"/api/v1/tokens/{token['id']}/cancel", headers=keys.h("operator"))
    assert again.json() == first.json()
    assert balance(client, keys) == "50.00"
    with write_tx(api_engine) as conn:
        n = conn.execute(select(T_TOKENS.c["count"]).where(T_TOKENS.c.id == token["id"]))
        count = n.scalar_one()
        assert count in setup(conn, "m1", "ab" * 32).cancelled  # type: ignore[union-attr]
        assert settle_token_event(conn, "m1", {"count": count, "amount": 1000}) == "after_cancel"
        tokens = setup(conn, "m1", "ab" * 32)
        assert tokens is not None and count in tokens.settled and not tokens.cancelled
    assert balance(client, keys) == "50.00"
    assert ledger_ok(client, keys)


def test_the_secret_is_in_no_answer_and_no_log(
    client: httpx.Client, keys: Keys, api_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fund(client, keys)
    answers = [vend(client, keys, {"amount": "1.00", "meter": "m1"}, key=f"k{i}").text
               for i in range(3)]  # fmt: skip
    key, start = secret(api_engine)
    token_id = vend(client, keys, {"amount": "1.00", "meter": "m1"}, key="k0").json()["id"]
    answers.append(client.get(f"/api/v1/tokens/{token_id}", headers=keys.h("admin")).text)
    answers.append(client.get("/api/v1/accounts/c1/entries", headers=keys.h("admin")).text)
    answers.append(client.get("/api/v1/meters/m1", headers=keys.h("admin")).text)
    answers.append(client.get("/openapi.json").text)
    for text in [*answers, caplog.text]:
        assert key not in text.lower()
        assert str(start) not in text
    with api_engine.connect() as conn:  # the queued credit states carry it sealed only
        payloads = [str(p) for (p,) in conn.exec_driver_sql("SELECT payload FROM commands")]
    assert payloads and all(key not in p for p in payloads)
