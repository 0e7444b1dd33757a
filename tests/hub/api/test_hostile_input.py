"""What an attacker probed (issue 14, item 8): extreme dates and integers in query parameters,
JSON bodies that repeat a key. Each is a 422 naming the field, and moves nothing."""

from __future__ import annotations

import pytest

from tests.hub.api.conftest import Shared
from tests.hub.api.helpers import error_fields

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
