"""A bill-payment network through a live server (claim 14): it fetches a bill by reference,
pays it (Ed25519-signed, idempotent on network_txn), pays again with the same network_txn
(the same answer, no money moved), is refused with a bad signature (nothing recorded), and its
day's reconciliation CSV equals the ledger."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import Engine

from hub.billing.reference import creditor_reference
from hub.db import read_tx, run_tx
from hub.keys import create_key
from hub.ledger import get_account
from hub.payments import store
from tests.hub.api.conftest import Keys
from tests.hub.payments.billed import billed_customers
from tests.hub.payments.ledgerpay import invariants


def network_key(engine: Engine, network: str) -> dict[str, str]:
    key = run_tx(engine, lambda s: create_key(s, "billpay", f"billpay:{network}", currency="USD"))
    return {"Authorization": f"Bearer {key[1]}"}


def balance(engine: Engine, account: str) -> int:
    with read_tx(engine) as conn:
        return get_account(conn, account).balance


def test_fetch_pay_replay_bad_signature_and_reconcile(
    client: httpx.Client, keys: Keys, api_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = Ed25519PrivateKey.generate()
    public = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    config = {"billpay:bbps": {"kind": "ed25519", "public_key": public}}
    monkeypatch.setenv("SMSA_HUB_PAYMENT_VERIFIERS", json.dumps(config))
    a, b = billed_customers(api_engine, client, keys.admin, 2, prefix="bp").values()
    net = network_key(api_engine, "bbps")

    def pay(doc: dict[str, str], sig: str | None = None) -> httpx.Response:
        raw = json.dumps(doc).encode()
        sig = signer.sign(raw).hex() if sig is None else sig
        return client.post("/api/v1/billpay/payments", content=raw,
                           headers={**net, "Content-Type": "application/json",
                                    "X-Signature": sig})  # fmt: skip

    fetched = client.get("/api/v1/billpay/bills", params={"reference": a.reference}, headers=net)
    assert fetched.status_code == 200, fetched.text
    due = fetched.json()["amount_due"]
    assert fetched.json()["bill"] == a.id and Decimal(due) * 100 == a.amount_due
    assert fetched.json()["customer_name"] == a.customer_id and fetched.json()["status"] == "open"

    doc = {"reference": a.reference, "amount": due, "network_txn": "T1",
           "paid_at": "2026-12-04T10:00:00+00:00"}  # fmt: skip
    first = pay(doc)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "credited" and first.json()["bill"] == a.id
    assert balance(api_engine, a.customer_id) == 0
    taken = balance(api_engine, "billpay:bbps")
    again = pay(doc)  # the network retries: the same answer, no money moved
    assert (again.status_code, again.json()) == (201, first.json())
    assert balance(api_engine, "billpay:bbps") == taken == -a.amount_due
    assert pay({**doc, "amount": "1.00"}).status_code == 409  # same network_txn, other body
    paid_twice = pay({**doc, "network_txn": "T3"})
    assert paid_twice.status_code == 409 and "nothing to pay" in paid_twice.json()["detail"]

    other = {**doc, "reference": b.reference, "network_txn": "T2"}
    bad = pay(other, sig="00" * 64)
    assert bad.status_code == 401
    assert pay(other, sig="").status_code == 401
    with read_tx(api_engine) as conn:
        assert store.find(conn, "billpay:bbps:T2") is None
    assert balance(api_engine, b.customer_id) == -b.amount_due

    unknown = creditor_reference("SMSA", 2026, 999_999)
    assert pay({**other, "reference": unknown}).status_code == 404
    assert pay({**other, "reference": "RF00SMSA2026000001"}).status_code == 422
    assert client.get("/api/v1/billpay/bills", params={"reference": a.reference},
                      headers=keys.h("customer")).status_code == 403  # fmt: skip

    split = client.get(f"/api/v1/payments/{first.json()['payment']}", headers=keys.h("admin"))
    (verification,) = split.json()["verifications"]
    assert verification["verifier"] == "ed25519:billpay:bbps"
    assert verification["outcome"] == "confirmed"
    assert sum(Decimal(x["amount"]) for x in split.json()["allocations"]) == Decimal(due)
    refetched = client.get("/api/v1/billpay/bills", params={"reference": a.reference}, headers=net)
    assert refetched.json()["status"] == "paid" and refetched.json()["amount_due"] == "0.00"

    reconcile(client, keys, net, api_engine, due)


def reconcile(client: httpx.Client, keys: Keys, net: dict[str, str], engine: Engine,
              due: str) -> None:  # fmt: skip
    """Today's CSV has the one payment, its total row equals its ledger row and the money
    the network's account took in; an operator names the network."""
    day = datetime.now(UTC).date().isoformat()
    r = client.get("/api/v1/billpay/reconciliation", params={"date": day}, headers=net)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text
    rows = list(csv.DictReader(io.StringIO(r.text)))
    payments = [x for x in rows if x["payment"].isdigit()]
    total = next(x for x in rows if x["payment"] == "total")
    ledger = next(x for x in rows if x["payment"] == "ledger")
    assert [x["network_txn"] for x in payments] == ["T1"]
    assert total["amount"] == ledger["amount"] == due and total["network_txn"] == "1"
    assert -Decimal(balance(engine, "billpay:bbps")) / 100 == Decimal(total["amount"])
    query = {"date": day, "network": "bbps"}
    operator = client.get(
        "/api/v1/billpay/reconciliation", params=query, headers=keys.h("operator")
    )
    assert operator.text == r.text
    assert client.get("/api/v1/billpay/reconciliation", params={"date": day},
                      headers=keys.h("operator")).status_code == 422  # fmt: skip
    assert invariants(engine) == {}
