"""Gateway ids are MQTT user names, and the broker keys sessions by user name: POST /gateways
refuses the hub's own MQTT user (from SMSA_HUB_MQTT) and the reserved "smsa-" names with 422
on ``id``, and creates nothing."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine

from hub.db import session_scope
from hub.models import Gateway
from hub.settings import HubSettings
from tests.hub.api.conftest import Keys
from tests.hub.api.helpers import error_fields


@pytest.fixture
def api_settings(api_settings: HubSettings) -> HubSettings:
    """The API's settings with a hub MQTT login whose user is not a reserved name."""
    return api_settings.model_copy(update={"mqtt": "mqtt://hub-main:pw@127.0.0.1:1"})


@pytest.mark.parametrize(
    "gateway_id", ["hub-main", "HUB-MAIN", "smsa-hub", "smsa-gw-gw-2", "Smsa-hub-2"]
)
def test_service_user_names_are_refused(
    client: httpx.Client, keys: Keys, api_engine: Engine, gateway_id: str
) -> None:
    r = client.post("/api/v1/gateways", json={"id": gateway_id}, headers=keys.h("admin"))
    assert r.status_code == 422, r.text
    assert error_fields(r) == ["id"]
    assert "MQTT" in r.json()["detail"][0]["msg"]
    with session_scope(api_engine, write=False) as session:
        assert session.get(Gateway, gateway_id) is None


@pytest.mark.parametrize("gateway_id", ["hub-main-2", "gw-smsa-hub", "smsa"])
def test_names_next_to_them_are_accepted(client: httpx.Client, keys: Keys, gateway_id: str) -> None:
    r = client.post("/api/v1/gateways", json={"id": gateway_id}, headers=keys.h("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["mqtt_username"] == gateway_id
