"""Payment-provider callbacks: signed over the raw body with a timestamp window, one credit per
transaction id; anything else is refused and moves no money."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from hub.app import create_app
from hub.db import make_engine, migrate, write_tx
from hub.ledger.accounts import open_account
from hub.ledger.topups import post_topup
from hub.models import AccountKind
from hub.services.payments import signature
from hub.settings import HubSettings
from tests.hub.api.conftest import PAYMENT_SECRET, Keys, serving
from tests.hub.api.helpers import error_fields, ledger_state

URL = "/api/v1/payments/callback/mpesa"


@pytest.fixture
def api_settings(api_settings: HubSettings) -> HubSettings:
    """Customer top-ups on (off by default): item 7's pre-claimed key was a customer's."""
    return api_settings.model_copy(update={"customer_topups": True})


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


def test_a_retried_transaction_gets_the_same_answer_and_moves_nothing(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    first = post(client, body("TX9"))
    assert first.status_code == 201
    state = ledger_state(api_engine)
    # The same signed callback again (a provider's retry, or a replay): the first answer.
    again = post(client, body("TX9"))
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    # The same transaction id with another amount: refused.
    r = post(client, body("TX9", amount="99.00"))
    assert r.status_code == 409
    assert "TX9" in r.json()["detail"]
    assert ledger_state(api_engine) == state


def test_one_provider_transaction_credits_one_account(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    """Issue 14, item 7: the transaction's key was scoped to the account in the callback, so
    the same provider transaction credited c1 and then again c2."""
    assert post(client, body("TX7", account="c1")).status_code == 201
    state = ledger_state(api_engine)
    r = post(client, body("TX7", account="c2"))
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "ConflictError"
    assert "TX7" in r.json()["detail"]
    assert ledger_state(api_engine) == state
    assert client.get("/api/v1/accounts/c2", headers=keys.h("admin")).json()["balance"] == "0.00"


@pytest.mark.parametrize("claimed", ["pay:mpesa:TX8", "payment:mpesa:TX8", "TX8"])
@pytest.mark.parametrize("role", ["admin", "customer"])
def test_an_idempotency_key_cannot_claim_a_provider_transaction(
    client: httpx.Client, keys: Keys, api_engine: Engine, role: str, claimed: str
) -> None:
    """Issue 14, item 7: a top-up with ``Idempotency-Key: pay:mpesa:TX8`` took the key the
    provider's callback for TX8 would use, and the real payment was then refused with 409."""
    r = client.post(
        "/api/v1/accounts/c1/topups",
        json={"amount": "1.00", "reference": "mine"},
        headers={**keys.h(role), "Idempotency-Key": claimed},
    )
    assert r.status_code == 201, r.text
    paid = post(client, body("TX8", amount="10.00"))
    assert paid.status_code == 201, paid.text
    assert paid.json()["balance"] == "11.00"
    assert paid.json()["id"] != r.json()["id"]
    # Each key still names its own top-up.
    again = client.post(
        "/api/v1/accounts/c1/topups",
        json={"amount": "1.00", "reference": "mine"},
        headers={**keys.h(role), "Idempotency-Key": claimed},
    )
    assert again.json() == r.json()
    assert post(client, body("TX8", amount="10.00")).json() == paid.json()


def test_payments_credited_before_the_upgrade_stay_credited_once(tmp_path: Path) -> None:
    """Before revision 0300 a payment's key was ``topup:<account>:pay:<provider>:<txn>``; the
    migration records those transactions, so a provider's retry after the upgrade is not
    credited again, to any account. A customer's top-up that only borrowed such a key (no
    provider behind it) is not taken for a payment."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        migrate(engine, revision="0200")
        with write_tx(engine) as conn:
            for account in ("c1", "c2"):
                open_account(conn, account, name=account, kind=AccountKind.CUSTOMER,
                             currency="USD")  # fmt: skip
            # What the old callback handler wrote, and a customer's pre-claim of TXPRE.
            old = {"payment_provider": "mpesa", "transaction_id": "TXOLD"}
            post_topup(conn, "c1", 1000, idempotency_key="pay:mpesa:TXOLD",
                       reference="mpesa:TXOLD", metadata=old)  # fmt: skip
            post_topup(conn, "c1", 100, idempotency_key="pay:mpesa:TXPRE", reference="mine",
                       metadata={"key_id": 3})  # fmt: skip
        migrate(engine)
        settings = HubSettings(db=url, mqtt="", payment_secrets={"mpesa": PAYMENT_SECRET},
                               scheduler=False)  # fmt: skip
        with (
            serving(create_app(settings, engine)) as server,
            httpx.Client(base_url=server.url, timeout=10) as client,
        ):
            state = ledger_state(engine)
            retry = post(client, json.dumps({"transaction_id": "TXOLD", "account": "c1",
                                             "amount": "10.00"}).encode())  # fmt: skip
            assert retry.status_code == 201, retry.text
            assert retry.json()["balance"] == "10.00"
            assert post(client, body("TXOLD", account="c2")).status_code == 409
            assert ledger_state(engine) == state
            r = post(client, body("TXPRE", amount="5.00"))
            assert r.status_code == 201, r.text
            assert r.json()["balance"] == "16.00"
    finally:
        engine.dispose()


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
