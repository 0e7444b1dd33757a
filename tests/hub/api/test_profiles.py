"""POST /imports/profiles through a live server: each field keeps its source; a value that
conflicts with another source's is reported and not overwritten; an admin resolves it; bad rows
are reported per row; a provider key imports only for its own customers."""

from __future__ import annotations

import httpx
from sqlalchemy import Engine

from tests.hub.api.conftest import Keys, new_key

ROW = {"customer": "c1", "address": "1 Main St", "postal_code": "SW1A 1AA", "country": "GB",
       "email": "ada@example.org", "delivery": "email", "account_number": "GEN-001"}  # fmt: skip


def test_profiles_keep_sources_and_report_conflicts(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    gen = {"Authorization": f"Bearer {new_key(api_engine, 'provider', 'provider:gen')}"}
    ret = {"Authorization": f"Bearer {new_key(api_engine, 'provider', 'provider:ret')}"}
    feed = {
        "rows": [
            ROW,
            {**ROW, "customer": "c2", "country": "Britain"},
            {**ROW, "customer": "nobody"},
            {"customer": "c2", "address": "x"},
        ]
    }
    r = client.post("/api/v1/imports/profiles", json=feed, headers=gen)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["accepted"] == 1 and report["conflicts"] == []
    assert [(x["row"], x["field"]) for x in report["rejected"]] == [
        (2, "country"), (3, "customer"), (4, "postal_code")]  # fmt: skip

    other = {**ROW, "email": "ada@elsewhere.org", "account_number": "R-77"}
    r = client.post("/api/v1/imports/profiles", json={"rows": [other]}, headers=ret).json()
    assert r["accepted"] == 1
    assert [(c["field"], c["have"], c["got"]) for c in r["conflicts"]] == [
        ("email", "ada@example.org", "ada@elsewhere.org")]  # fmt: skip
    profile = client.get("/api/v1/customers/c1/profile", headers=keys.h("customer")).json()
    assert profile["fields"]["email"]["value"] == "ada@example.org"  # not overwritten
    assert profile["fields"]["email"]["source"] == "provider:gen"
    assert {p: v["value"] for p, v in profile["account_numbers"].items()} == {
        "gen": "GEN-001", "ret": "R-77"}  # fmt: skip
    assert [c["field"] for c in profile["conflicts"]] == ["email"]

    fix = {"customer": "c1", "address": "1 Main St", "postal_code": "SW1A 1AA", "country": "GB",
           "delivery": "both", "email": "ada@elsewhere.org"}  # fmt: skip
    r = client.post("/api/v1/imports/profiles", json={"rows": [fix]}, headers=keys.h("admin"))
    assert r.json()["accepted"] == 1 and r.json()["conflicts"] == []
    profile = client.get("/api/v1/customers/c1/profile", headers=keys.h("admin")).json()
    assert profile["fields"]["email"] == {
        **profile["fields"]["email"],
        "value": "ada@elsewhere.org",
        "source": "admin",
    }
    assert profile["conflicts"] == [] and profile["fields"]["delivery"]["value"] == "both"

    csv = "customer,address,postal_code,country,delivery\nc1,2 High St,AB1 2CD,GB,paper\n"
    r = client.post("/api/v1/imports/profiles", content=csv,
                    headers={**gen, "Content-Type": "text/csv"})  # fmt: skip
    assert [c["field"] for c in r.json()["conflicts"]] == ["address", "postal_code", "delivery"]
    assert client.get("/api/v1/customers/c2/profile", headers=keys.h("customer")).status_code == 403
