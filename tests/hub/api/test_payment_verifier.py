"""Third-party verification (claim 15) against a small real HTTP server on 127.0.0.1: a
payment whose confirmation is refused (connection refused, a refusal, or no answer in time)
is held pending or refused and credits nothing, a later failed verification releases nothing,
a confirmed one is credited, and each attempt is recorded with its verifier and time."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from hub.db import read_tx
from hub.ledger import get_account
from hub.services.payments import signature
from tests.hub.api.conftest import PAYMENT_SECRET, Keys
from tests.hub.api.test_billpay import network_key
from tests.hub.payments.billed import billed_customers
from tests.hub.payments.ledgerpay import invariants
from tests.support import free_port


class ThirdParty(ThreadingHTTPServer):
    """Answers ``POST /confirm``: ``mode`` confirm, refuse or slow (answers only when released,
    after the hub's timeout); ``claims`` is what it was asked."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.mode = "confirm"
        self.claims: list[dict[str, Any]] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/confirm"


class Handler(BaseHTTPRequestHandler):
    server: ThirdParty

    def do_POST(self) -> None:
        claim = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.claims.append(claim)
        if self.server.mode == "slow":
            self.server.release.wait(10)
        answer = {"confirmed": self.server.mode != "refuse", "reference": f"ok-{claim['payment']}"}
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def third_party() -> Iterator[ThirdParty]:
    server = ThirdParty()
    thread = threading.Thread(target=server.serve_forever, name="third-party", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def verifiers(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    config = {"kind": "url", "url": url, "timeout_s": 0.3}
    monkeypatch.setenv("SMSA_HUB_PAYMENT_VERIFIERS",
                       json.dumps({"billpay:npci": config, "callback:mpesa": config}))  # fmt: skip


def balance(engine: Engine, account: str) -> int:
    with read_tx(engine) as conn:
        return get_account(conn, account).balance


def test_unconfirmed_payments_credit_nothing(
    client: httpx.Client, keys: Keys, api_engine: Engine, third_party: ThirdParty,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    a, b = billed_customers(api_engine, client, keys.admin, 2, prefix="vf").values()
    net = network_key(api_engine, "npci")
    closed = f"http://127.0.0.1:{free_port()}/confirm"  # nothing listens there: refused
    verifiers(monkeypatch, closed)

    def pay(bill: Any, txn: str) -> httpx.Response:
        doc = {"reference": bill.reference, "amount": f"{bill.amount_due / 100:.2f}",
               "network_txn": txn, "paid_at": "2026-12-04T10:00:00+00:00"}  # fmt: skip
        return client.post("/api/v1/billpay/payments", json=doc, headers=net)

    held = pay(a, "V1")
    assert held.status_code == 202 and held.json()["status"] == "pending", held.text
    payment = held.json()["payment"]
    assert balance(api_engine, a.customer_id) == -a.amount_due
    pending = client.get(
        "/api/v1/payments", params={"status": "pending"}, headers=keys.h("operator")
    )
    assert [p["id"] for p in pending.json()] == [payment]
    assert client.get("/api/v1/payments", headers=keys.h("customer")).status_code == 403

    def verify() -> dict[str, Any]:
        r = client.post(f"/api/v1/payments/{payment}/verify", headers=keys.h("operator"))
        assert r.status_code == 200, r.text
        return r.json()

    third_party.mode = "slow"  # answers after the hub gave up: still nothing credited
    verifiers(monkeypatch, third_party.url)
    started = time.monotonic()
    slow = verify()
    assert time.monotonic() - started < 5
    assert slow["status"] == "pending" and slow["allocations"] == []
    assert [v["outcome"] for v in slow["verifications"]] == ["unavailable", "unavailable"]
    assert slow["verifications"][1]["detail"] == "no answer within 0.3 s"
    third_party.release.set()

    third_party.mode = "refuse"
    refused = verify()
    assert refused["status"] == "refused" and refused["verifications"][-1]["outcome"] == "refused"
    third_party.mode = "confirm"  # a refused payment stays refused: nothing is released
    assert verify()["status"] == "refused"
    assert balance(api_engine, a.customer_id) == -a.amount_due
    assert balance(api_engine, "billpay:npci") == 0

    confirmed = pay(b, "V2")
    assert confirmed.status_code == 201 and confirmed.json()["status"] == "credited"
    doc = client.get(f"/api/v1/payments/{confirmed.json()['payment']}",
                     headers=keys.h("operator")).json()  # fmt: skip
    (check,) = doc["verifications"]
    assert (check["verifier"], check["outcome"]) == ("url:billpay:npci", "confirmed")
    assert check["detail"] == f"ok-{doc['id']}" and doc["credited_at"] >= check["at"]
    assert balance(api_engine, b.customer_id) == 0
    assert third_party.claims[-1]["network_txn"] == "V2"

    third_party.mode = "refuse"  # a signed provider callback is held for the provider's word
    raw = json.dumps({"transaction_id": "CB1", "account": "c1", "amount": "5.00"}).encode()
    stamp = str(int(time.time()))
    r = client.post("/api/v1/payments/callback/mpesa", content=raw,
                    headers={"Content-Type": "application/json", "X-Timestamp": stamp,
                             "X-Signature": signature(PAYMENT_SECRET, stamp, raw)})  # fmt: skip
    assert r.status_code == 202 and r.json()["status"] == "refused", r.text
    assert balance(api_engine, "c1") == 0
    assert invariants(api_engine) == {}
