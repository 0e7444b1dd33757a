"""A prepaid top-up still works as before and its answer carries its payment: GET
/payments/{id} shows it all as credit (a prepaid customer has no bill to pay); the customer
sees its own payment only."""

from __future__ import annotations

import httpx

from tests.hub.api.conftest import Keys


def test_topup_answer_carries_its_payment(client: httpx.Client, keys: Keys) -> None:
    r = client.post("/api/v1/accounts/c1/topups", json={"amount": "12.50", "reference": "cash"},
                    headers={**keys.h("admin"), "Idempotency-Key": "split-1"})  # fmt: skip
    assert r.status_code == 201 and r.json()["balance"] == "12.50", r.text
    payment = r.json()["payment"]
    again = client.post("/api/v1/accounts/c1/topups", json={"amount": "12.50", "reference": "cash"},
                        headers={**keys.h("admin"), "Idempotency-Key": "split-1"})  # fmt: skip
    assert again.json() == r.json()
    doc = client.get(f"/api/v1/payments/{payment}", headers=keys.h("customer"))
    assert doc.status_code == 200, doc.text
    body = doc.json()
    assert (body["amount"], body["credit"], body["allocations"]) == ("12.50", "12.50", [])
    assert (body["channel"], body["status"], body["policy"]) == ("topup", "credited", "1")
    assert client.get(f"/api/v1/payments/{payment}", headers=keys.h("other")).status_code == 403
    assert client.get("/api/v1/payments/999999", headers=keys.h("admin")).status_code == 404
