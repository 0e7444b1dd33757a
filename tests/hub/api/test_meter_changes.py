"""A meter's sharers, supply mix and payer changes through the API (issue 15 items 1, 2, 5):
what is refused (422 naming the field, 403, 409) and what is audited; the money itself is
tested end to end (tests/e2e/test_shared_meter.py) and by the combined-credit property
(tests/hub/control/test_combined.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import Engine

from tests.hub.api.conftest import Keys, new_key
from tests.hub.api.helpers import error_fields


def meter(sharers: object, meter_id: str = "m-s") -> dict[str, object]:
    return {"id": meter_id, "gateway": "gw1", "customer": "c1", "tariff": "t1",
            "sharers": sharers}  # fmt: skip


def test_bad_sharers_are_refused_naming_the_field(client: httpx.Client, keys: Keys) -> None:
    admin = keys.h("admin")
    cases = [
        ([{"customer": "nobody", "weight": 1}], "sharers[0].customer"),
        ([{"customer": "c1", "weight": 0}, {"customer": "c2", "weight": 0}], "sharers"),
        ([{"customer": "c1", "weight": 1}, {"customer": "c1", "weight": 2}], "sharers[1]"),
        ([{"customer": "c1", "weight": -1}], "sharers.0.weight"),
        ([{"customer": "c1", "weight": 1.5}], "sharers.0.weight"),
        ([], "sharers"),
    ]
    for sharers, field in cases:
        r = client.post("/api/v1/meters", headers=admin, json=meter(sharers))
        assert r.status_code == 422, (sharers, r.text)
        assert field in r.text or any(field in f for f in error_fields(r)), (sharers, r.text)
    assert client.get("/api/v1/meters/m-s", headers=keys.h("operator")).status_code == 404


def test_sharers_are_set_and_changed_with_history(client: httpx.Client, keys: Keys) -> None:
    admin = keys.h("admin")
    shared = [{"customer": "c1", "weight": 2}, {"customer": "c2", "weight": 1}]
    assert client.post("/api/v1/meters", headers=admin, json=meter(shared)).status_code == 201
    r = client.patch("/api/v1/meters/m-s", headers=admin,
                     json={"sharers": [{"customer": "c2", "weight": 1}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert client.patch("/api/v1/meters/m-s", headers=admin, json={"sharers": None}).is_success
    assert client.patch("/api/v1/meters/m-s", headers=admin, json={"sharers": None}).is_success
    r = client.patch("/api/v1/meters/m-s", headers=admin, json={"customer": "nobody"})
    assert r.status_code == 422 and "customer" in r.text
    assert (
        client.patch("/api/v1/meters/m-s", headers=admin, json={"customer": None}).status_code
        == 422
    )
    assert client.patch("/api/v1/meters/nope", headers=admin, json={}).status_code == 404
    assert client.patch("/api/v1/meters/m-s", headers=keys.h("operator"),
                        json={"sharers": None}).status_code == 403  # fmt: skip

    history = client.get("/api/v1/meters/m-s/history", headers=keys.h("operator")).json()
    assert [sorted(h["changes"]) for h in history] == [["from", "sharers"], ["from", "sharers"]]
    assert history[1]["changes"]["sharers"] == {
        "from": [{"customer": "c1", "weight": 2}, {"customer": "c2", "weight": 1}],
        "to": [{"customer": "c2", "weight": 1}],
    }
    assert history[0]["changes"]["sharers"]["to"] is None
    assert all(h["key_id"] is not None for h in history)
    events = client.get("/api/v1/events", params={"kind": "meter_changed", "meter": "m-s"},
                        headers=keys.h("operator")).json()  # fmt: skip
    assert len(events) == 2 and events[0]["data"]["by"] == "admin"


def test_the_supply_mix_rules(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:
    admin = keys.h("admin")
    for pid, tier in (("sun", "generation"), ("other", "generation")):
        r = client.post("/api/v1/providers", headers=admin,
                        json={"id": pid, "name": pid, "tier": tier})  # fmt: skip
        assert r.status_code == 201, r.text
    start = datetime.now(UTC) + timedelta(hours=1)
    mix = {"from": start.isoformat(), "shares": {"sun": "0.6", "gen": "0.4"}}
    url = "/api/v1/meters/m1/supply-mix"

    # a provider key posts only the mix of its own pool (t1's generation provider is "gen")
    other = {"Authorization": f"Bearer {new_key(api_engine, 'provider', 'provider:other')}"}
    assert client.post(url, headers=other, json=mix).status_code == 403
    assert client.post(url, headers=keys.h("operator"), json=mix).status_code == 403
    pool = {"Authorization": f"Bearer {new_key(api_engine, 'provider', 'provider:gen')}"}
    r = client.post(url, headers=pool, json=mix)
    assert r.status_code == 201, r.text
    assert r.json()["shares"] == {"gen": "0.4", "sun": "0.6"} and r.json()["from"]

    later = {"from": (start + timedelta(hours=1)).isoformat(), "shares": {"sun": "1"}}
    assert client.post(url, headers=admin, json=later).status_code == 201  # closes the open one
    inside = {"from": (start + timedelta(minutes=10)).isoformat(),
              "to": (start + timedelta(minutes=20)).isoformat(),
              "shares": {"sun": "1"}}  # fmt: skip
    assert client.post(url, headers=admin, json=inside).status_code == 409
    backwards = {**inside, "to": start.isoformat()}
    r = client.post(url, headers=admin, json=backwards)
    assert r.status_code == 422 and "to" in error_fields(r), r.text
    for shares, field in (({"sun": "0.6"}, "shares"), ({"sun": "0.6", "ret": "0.4"}, "ret"),
                          ({"sun": "1.5"}, "sun"), ({"sun": "0.6x"}, "sun")):  # fmt: skip
        r = client.post(url, headers=admin, json={"from": start.isoformat(), "shares": shares})
        assert r.status_code == 422 and any(field in f for f in error_fields(r)), r.text
    assert client.post("/api/v1/meters/nope/supply-mix", headers=admin, json=mix).status_code == 404
    history = client.get("/api/v1/meters/m1/history", headers=keys.h("operator")).json()
    assert [h["changes"]["supply_mix"]["to"]["pool"] for h in history] == ["gen", "gen"]
