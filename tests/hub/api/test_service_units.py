"""A meter's service, its tariff's unit and its register map's unit are checked against each
other at creation (issue 15): water is priced per m3, electricity and gas per kWh."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hub.api.conftest import Shared
from tests.hub.api.helpers import error_fields

WATER_TARIFF = {
    "id": "w1",
    "currency": "USD",
    "components": [{"provider": "ret", "per_m3": "1.20"}],
}
STANDING_ONLY = {"id": "s1", "currency": "USD", "components": [{"provider": "ret", "per_day": "1"}]}


@pytest.fixture(scope="module")
def world(shared: Shared) -> Shared:
    for body in (WATER_TARIFF, STANDING_ONLY):
        r = shared.client.post("/api/v1/tariffs", json=body, headers=shared.keys.h("admin"))
        assert r.status_code == 201, r.text
    return shared


def _meter(shared: Shared, **body: Any) -> httpx.Response:
    body = {"gateway": "gw1", "customer": "c1"} | body
    return shared.client.post("/api/v1/meters", json=body, headers=shared.keys.h("admin"))


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        ({"service": "water", "tariff": "t1"}, "tariff", "prices per kWh; water is priced per m3"),
        ({"service": "electricity", "tariff": "w1"}, "tariff", "electricity is priced per kWh"),
        ({"service": "gas", "tariff": "w1"}, "tariff", "gas is priced per kWh"),
        (
            {"service": "electricity", "tariff": "t1", "model": "sfar-1m-4di-water"},
            "model",
            "meters water (its register counts L), not electricity",
        ),
        ({"service": "water", "tariff": "w1", "model": "sdm120"}, "model", "meters electricity"),
        ({"service": "water", "tariff": "w1", "model": "no-such-map"}, "model", "unknown"),
        ({"service": "water", "tariff": "w1", "model": "modbus-relay-module"}, "model", "not a"),
    ],
)
def test_a_mismatch_is_refused_naming_the_field(
    world: Shared, body: dict[str, Any], field: str, says: str
) -> None:
    meter = f"bad-{field}-{len(says)}"
    r = _meter(world, id=meter, **body)
    assert r.status_code == 422, r.text
    assert error_fields(r) == [field]
    assert says in r.text
    got = world.client.get(f"/api/v1/meters/{meter}", headers=world.keys.h("admin"))
    assert got.status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"service": "water", "tariff": "w1", "model": "sfar-1m-4di-water"},
        {"service": "gas", "tariff": "t1", "model": "sfar-1m-4di-gas"},
        {"service": "electricity", "tariff": "t1", "model": "dds238-2-zn-sr"},
        {"service": "water", "tariff": "s1"},  # a standing charge prices any service
    ],
)
def test_matching_units_are_accepted(world: Shared, body: dict[str, Any]) -> None:
    r = _meter(world, id=f"ok-{body['service']}-{body['tariff']}", **body)
    assert r.status_code == 201, r.text
    assert r.json()["service"] == body["service"]


def test_a_tariff_prices_per_kwh_or_per_m3_not_both(world: Shared) -> None:
    body = {
        "id": "mixed",
        "currency": "USD",
        "components": [{"provider": "gen", "per_kwh": "0.1"}, {"provider": "ret", "per_m3": "1"}],
    }
    r = world.client.post("/api/v1/tariffs", json=body, headers=world.keys.h("admin"))
    assert r.status_code == 422
    assert "per kWh or per m3, not both" in r.text


def test_a_new_version_cannot_change_the_unit_under_its_meters(world: Shared) -> None:
    assert _meter(world, id="w-meter", service="water", tariff="w1").status_code == 201
    version = {"currency": "USD", "components": [{"provider": "ret", "per_kwh": "0.3"}]}
    r = world.client.post(
        "/api/v1/tariffs/w1/versions", json=version, headers=world.keys.h("admin")
    )
    assert r.status_code == 422, r.text
    assert error_fields(r) == ["components"]
    assert "water is priced per m3" in r.text
