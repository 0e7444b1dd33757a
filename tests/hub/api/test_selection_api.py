"""Provider selection's configuration through the API (contract section 5): ``POST /meters``
with a ``selection``, ``POST /slas``, ``POST /providers`` with a ``priority_fee`` and ``PATCH
/meters/{id}``; what is invalid is a 422 naming the field and changes nothing. How selection
settles is tested end to end in ``tests/e2e/test_selection.py``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hub.api.conftest import Shared
from tests.hub.api.helpers import error_fields

TARIFFS: list[dict[str, Any]] = [
    {"id": "sel-a", "currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.10"}]},
    {"id": "sel-b", "currency": "USD", "components": [{"provider": "gen2", "per_kwh": "0.12"}]},
    {"id": "sel-m3", "currency": "USD", "components": [{"provider": "gen3", "per_m3": "1.1"}]},
    {"id": "sel-gen", "currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.2"}]},
]


@pytest.fixture(scope="module")
def world(shared: Shared) -> Shared:
    h = shared.keys.h("admin")
    for pid in ("gen2", "gen3"):
        body = {"id": pid, "name": pid, "tier": "generation", "priority_fee": "0.015"}
        r = shared.client.post("/api/v1/providers", json=body, headers=h)
        assert r.status_code == 201, r.text
        assert r.json()["priority_fee"] == "0.015"
    for body in TARIFFS:
        r = shared.client.post("/api/v1/tariffs", json=body, headers=h)
        assert r.status_code == 201, r.text
    return shared


def _meter(shared: Shared, meter: str, **body: Any) -> httpx.Response:
    body = {"id": meter, "gateway": "gw1", "customer": "c1"} | body
    return shared.client.post("/api/v1/meters", json=body, headers=shared.keys.h("admin"))


@pytest.mark.parametrize(
    ("selection", "field", "says"),
    [
        ({"policy": "cheapest", "tariffs": ["sel-a"]}, "selection.policy", "unknown policy"),
        ({"policy": "sla", "tariffs": ["sel-a", "nope"]}, "selection.tariffs", "unknown tariff"),
        ({"policy": "least_cost", "tariffs": ["sel-a", "sel-m3"]}, "selection.tariffs",
         "mixed units"),
        ({"policy": "least_cost", "tariffs": ["sel-a", "sel-gen"]}, "selection.tariffs",
         "offers in 'sel-a' and 'sel-gen'"),
    ],
)  # fmt: skip
def test_an_invalid_selection_is_refused_naming_the_field(
    world: Shared, selection: dict[str, Any], field: str, says: str
) -> None:
    meter = f"bad-sel-{len(says)}"
    r = _meter(world, meter, selection=selection)
    assert r.status_code == 422, r.text
    assert error_fields(r) == [field] and says in r.text
    got = world.client.get(f"/api/v1/meters/{meter}", headers=world.keys.h("admin"))
    assert got.status_code == 404


def test_a_meter_with_a_selection_takes_its_first_tariff_and_needs_no_other(world: Shared) -> None:
    r = _meter(world, "sel-ok", selection={"policy": "least_cost", "tariffs": ["sel-b", "sel-a"]})
    assert r.status_code == 201, r.text
    assert r.json()["tariff"] == "sel-b"
    r = _meter(world, "sel-none")
    assert r.status_code == 422 and error_fields(r) == ["tariff"]


def test_an_sla_is_recorded_and_checked(world: Shared) -> None:
    h = world.keys.h("admin")
    body = {"customer": "c1", "provider": "gen2", "from": "2026-01-01T00:00:00Z"}
    r = world.client.post("/api/v1/slas", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json() | {"id": 0} == {"id": 0, "customer": "c1", "provider": "gen2",
                                    "from": "2026-01-01T00:00:00Z", "to": None}  # fmt: skip
    for bad, field in (({"provider": "nope"}, "provider"), ({"customer": "nope"}, "customer"),
                       ({"to": "2025-01-01T00:00:00Z"}, "to")):  # fmt: skip
        r = world.client.post("/api/v1/slas", json=body | bad, headers=h)
        assert r.status_code == 422 and error_fields(r) == [field], r.text
    r = world.client.post("/api/v1/slas", json=body, headers=world.keys.h("operator"))
    assert r.status_code == 403


def test_patch_changes_the_tariff_from_a_date_audited(world: Shared) -> None:
    h = world.keys.h("admin")
    assert _meter(world, "sel-patch", tariff="sel-a").status_code == 201
    change = {"tariff": "sel-b", "from": "2030-01-01T00:00:00Z"}
    r = world.client.patch("/api/v1/meters/sel-patch", json=change, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["tariff"] == "sel-b"
    query = {"kind": "meter_changed", "meter": "sel-patch"}
    events = world.client.get("/api/v1/events", params=query, headers=h)
    [event] = events.json()
    assert event["data"]["changes"] == {"tariff": {"from": "sel-a", "to": "sel-b",
                                                   "at": "2030-01-01T00:00:00+00:00"}}  # fmt: skip
    # not before the latest change (a conflict, as for the payers); an unknown tariff or a
    # wrong unit named
    before = change | {"from": "2029-01-01T00:00:00Z"}
    r = world.client.patch("/api/v1/meters/sel-patch", json=before, headers=h)
    assert r.status_code == 409 and "latest pricing change" in r.json()["detail"], r.text
    for bad, field in (({"tariff": "nope"}, "tariff"), ({"tariff": "sel-m3"}, "tariff")):
        r = world.client.patch("/api/v1/meters/sel-patch", json=change | bad, headers=h)
        assert r.status_code == 422 and error_fields(r) == [field], r.text
    r = world.client.patch(
        "/api/v1/meters/sel-patch", json=change, headers=world.keys.h("operator")
    )
    assert r.status_code == 403
    r = world.client.patch("/api/v1/meters/nope", json=change, headers=h)
    assert r.status_code == 404


def test_a_new_version_of_a_candidate_tariff_sends_the_selecting_meter_its_state(
    world: Shared,
) -> None:
    h = world.keys.h("admin")
    body = {"policy": "least_cost", "tariffs": ["sel-c", "sel-a"]}
    r = world.client.post(
        "/api/v1/tariffs",
        headers=h,
        json={
            "id": "sel-c",
            "currency": "USD",
            "components": [{"provider": "gen3", "per_kwh": "0.3"}],
        },
    )
    assert r.status_code == 201, r.text
    assert _meter(world, "sel-ver", selection=body).status_code == 201
    version = {"currency": "USD", "components": [{"provider": "gen", "per_kwh": "0.09"}]}
    r = world.client.post("/api/v1/tariffs/sel-a/versions", json=version, headers=h)
    assert r.status_code == 201, r.text
    commands = world.client.get("/api/v1/meters/sel-ver/commands", headers=h).json()
    assert [c["action"] for c in commands] == ["credit"]
