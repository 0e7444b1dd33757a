"""Payment-provider callbacks: signed over the raw body with a timestamp window, one credit per
transaction id; anything else is refused and moves no money."""

from __future__ import annotations

import json
import time

import httpx
from sqlalchemy import Engine

from hub.payments import signature
from tests.hub.api.conftest import PAYMENT_SECRET, Keys
from tests.hub.api.helpers import error_fields, ledger_state

URL = "/api/v1/payments/callback/mpesa"


def body(txn: str = "TX1", amount: str = "10.00", account: str = "c1") -> bytes:
    return json.dumps({"transaction_id": txn, "account": account, "amount": amount}).encode()


def post(
    client: httpx.Client,
    raw: bytes,
    *,
    secret: str = PAYMENT_SECRET,
    ts: int | None = None,
    url: str = URL,
    sig: str | None = None,
) -> httpx.Response:
    stamp = str(int(time.time()) if ts is None else ts)
    headers = {
        "Content-Type": "application/json",
        "X-Timestamp": stamp,
        "X-Signature": sig if sig is not None else "sha256=" + signature(secret, stamp, raw),
    }
    return client.post(url, content=raw, headers=headers)


def test_signed_callback_credits_the_account(client: httpx.Client, keys: Keys) -> None:
    r = post(client, body())
    assert r.status_code == 201, r.text
    assert r.json()["balance"] == "10.00"
    account = client.get("/api/v1/accounts/c1", headers=keys.h("customer")).json()
    assert account["balance"] == "10.00"


def test_bad_signature_is_refused(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    state = ledger_state(api_engine)
    assert post(client, body(), secret="wrong").status_code == 401
    assert post(client, body(), sig="").status_code == 401
    assert post(client, body(), sig="sha256=" + "0" * 64).status_code == 401
    # Signed, then the body changed in transit.
    stamp = str(int(time.time()))
    good = signature(PAYMENT_SECRET, stamp, body(amount="1.00"))
    r = client.post(
        URL, content=body(amount="100.00"), headers={"X-Timestamp": stamp, "X-Signature": good}
    )
    assert r.status_code == 401
    # A provider without a configured secret.
    assert post(client, body(), url="/api/v1/payments/callback/other").status_code == 401
    assert ledger_state(api_engine) == state


def test_stale_or_future_timestamp_is_refused(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    state = ledger_state(api_engine)
    now = int(time.time())  # the window is 300 s; margins allow for a slow, loaded host
    assert post(client, body(), ts=now - 400).status_code == 401
    assert post(client, body(), ts=now + 400).status_code == 401
    r = client.post(URL, content=body(), headers={"X-Signature": "sha256=00", "X-Timestamp": "x"})
    assert r.status_code == 401
    assert ledger_state(api_engine) == state


def test_replayed_transaction_is_refused(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    assert post(client, body("TX9")).status_code == 201
    state = ledger_state(api_engine)
    # The same signed callback again (a retry or a replay), and the id with another amount.
    assert post(client, body("TX9")).status_code == 409
    assert post(client, body("TX9", amount="99.00")).status_code == 409
    assert ledger_state(api_engine) == state


def test_signed_but_invalid_payment_is_422(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    state = ledger_state(api_engine)
    r = post(client, body(amount="-1.00"))
    assert r.status_code == 422
    assert error_fields(r) == ["amount"]
    assert error_fields(post(client, body(amount="1.001"))) == ["amount"]
    assert post(client, b"not json").status_code == 422
    raw = json.dumps({"transaction_id": "T", "account": "c1", "amount": "1", "x": 1}).encode()
    assert error_fields(post(client, raw)) == ["x"]
    assert post(client, body(account="nope")).status_code == 404
    assert ledger_state(api_engine) == state


def test_oversized_body_is_refused_unread(client: httpx.Client, keys: Keys) -> None:
    raw = b'{"transaction_id": "T", "pad": "' + b"x" * 40_000 + b'"}'
    assert post(client, raw).status_code == 413
