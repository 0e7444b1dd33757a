"""What an attacker probed (issue 14, item 8): extreme dates and integers in query parameters,
JSON bodies that repeat a key. Each is a 422 naming the field, and moves nothing."""

from __future__ import annotations

import time

import pytest

from hub.services.payments import signature
from tests.hub.api.conftest import PAYMENT_SECRET, Shared
from tests.hub.api.helpers import error_fields, ledger_state

HUGE = "9" * 30
EXTREME_QUERIES = [
    ("/api/v1/events", "since", "0001-01-01T00:00:00+01:00"),  # before year 1 in UTC
    ("/api/v1/events", "since", "9999-12-31T23:59:59-01:00"),  # after year 9999 in UTC
    ("/api/v1/events", "after", HUGE),
    ("/api/v1/events", "after", str(2**63)),
    ("/api/v1/accounts/c1/entries", "before", HUGE),
    ("/api/v1/accounts/c1/entries", "before", str(2**63)),
    ("/api/v1/providers/gen/statement?end=2100-01-01T00:00:00Z", "start",
     "0001-01-01T00:00:00+01:00"),
    ("/api/v1/providers/gen/statement?start=2000-01-01T00:00:00Z", "end",
     "9999-12-31T23:59:59-01:00"),
    ("/api/v1/events/stream", "last_event_id", HUGE),
]  # fmt: skip


@pytest.mark.parametrize(("path", "name", "value"), EXTREME_QUERIES)
def test_extreme_query_values_are_422_naming_the_parameter(
    shared: Shared, path: str, name: str, value: str
) -> None:
    sep = "&" if "?" in path else "?"
    r = shared.client.get(
        f"{path}{sep}{name}={value}".replace("+", "%2B"), headers=shared.keys.h("admin")
    )
    assert r.status_code == 422, r.text
    assert error_fields(r) == [f"query.{name}"], r.json()
    assert len(r.json()["detail"][0]["msg"].splitlines()) == 1


def test_the_largest_ids_and_instants_are_answered(shared: Shared) -> None:
    h = shared.keys.h("admin")
    for query in (f"after={2**63 - 1}", "since=9999-12-31T23:59:59Z", "since=0001-01-01T00:00Z"):
        assert shared.client.get(f"/api/v1/events?{query}", headers=h).json() == []
    r = shared.client.get(f"/api/v1/accounts/c1/entries?before={2**63 - 1}", headers=h)
    assert r.status_code == 200, r.text


def test_a_huge_last_event_id_header_is_422(shared: Shared) -> None:
    headers = {**shared.keys.h("admin"), "Last-Event-ID": HUGE}
    with shared.client.stream("GET", "/api/v1/events/stream", headers=headers) as r:
        r.read()
        assert r.status_code == 422
    assert error_fields(r) == ["header.Last-Event-ID"]


def test_an_extreme_tariff_start_is_422(shared: Shared) -> None:
    body = {"id": "t-extreme", "currency": "USD", "valid_from": "0001-01-01T00:00:00+01:00",
            "components": [{"provider": "gen", "per_kwh": "0.10"}]}  # fmt: skip
    r = shared.client.post("/api/v1/tariffs", json=body, headers=shared.keys.h("admin"))
    assert r.status_code == 422, r.text
    assert error_fields(r) == ["valid_from"]


DUPLICATE_BODIES = [
    ("/api/v1/accounts/c1/topups", b'{"amount": "1.00", "amount": "400.00", "reference": "r"}',
     "amount"),
    ("/api/v1/providers", b'{"id": "pdup", "name": "P", "tier": "retail", "tier": "platform"}',
     "tier"),
    ("/api/v1/tariffs", b'{"id": "tdup", "currency": "USD", "components": [{"provider": "gen", '
     b'"per_kwh": "0.10", "provider": "ret"}]}', "components.0.provider"),
    ("/api/v1/meters", b'{"id": "mdup", "gateway": "gw1", "customer": "c1", "customer": "c2", '
     b'"tariff": "t1"}', "customer"),
    ("/api/v1/meters/m1/disconnect", b'{"reason": "a", "reason": "b"}', "reason"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "raw", "field"), DUPLICATE_BODIES)
def test_a_repeated_json_key_is_422_naming_it(
    shared: Shared, path: str, raw: bytes, field: str
) -> None:
    state = ledger_state(shared.engine)
    headers = {**shared.keys.h("admin"), "Content-Type": "application/json",
               "Idempotency-Key": f"dup-{field}"}  # fmt: skip
    r = shared.client.post(path, content=raw, headers=headers)
    assert r.status_code == 422, r.text
    assert error_fields(r) == [field], r.json()
    key = field.rsplit(".", maxsplit=1)[-1]
    assert r.json()["detail"][0]["msg"] == f"duplicate key {key!r}"
    assert ledger_state(shared.engine) == state


def test_a_signed_payment_that_repeats_a_key_is_422(shared: Shared) -> None:
    state = ledger_state(shared.engine)
    raw = b'{"transaction_id": "TXD", "account": "c1", "amount": "1.00", "amount": "400.00"}'
    stamp = str(int(time.time()))
    sig = "sha256=" + signature(PAYMENT_SECRET, stamp, raw)
    r = shared.client.post("/api/v1/payments/callback/mpesa", content=raw,
                           headers={"X-Timestamp": stamp, "X-Signature": sig})  # fmt: skip
    assert r.status_code == 422, r.text
    assert error_fields(r) == ["amount"]
    assert ledger_state(shared.engine) == state


def test_json_that_is_not_json_is_still_422(shared: Shared) -> None:
    headers = {**shared.keys.h("admin"), "Content-Type": "application/json"}
    r = shared.client.post("/api/v1/providers", content=b'{"id": ', headers=headers)
    assert r.status_code == 422
    r = shared.client.post("/api/v1/providers", content=b'{"id": "\xff"}', headers=headers)
    assert r.status_code == 400
