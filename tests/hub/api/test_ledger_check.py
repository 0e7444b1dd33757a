"""GET /ledger/check reports invariant 6 per register segment: a span posted twice for a meter,
written straight into the ledger (bypassing ingest, whose register rule refuses it), is a
violation of ``energy_follows_register``, which the older ``energy`` check took for a reset."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine

from hub import ledger
from hub.db import run_tx
from hub.ledger import UsagePosting
from tests.hub.api.conftest import Keys


def _post(engine: Engine, *postings: UsagePosting) -> None:
    result = run_tx(engine, lambda s: ledger.post_usage_batch(s, list(postings)))
    assert len(result.posted) == len(postings), result


def _check(client: httpx.Client, keys: Keys) -> dict[str, Any]:
    r = client.get("/api/v1/ledger/check", headers=keys.h("operator"))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_span_posted_twice_is_reported(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    c1, gen = "c1", "provider:gen"
    _post(api_engine,
          UsagePosting("m1", 1, 1000, 21_000, [(c1, -200), (gen, 200)], "USD"),
          UsagePosting("m1", 2, 21_000, 41_000, [(c1, -200), (gen, 200)], "USD"))  # fmt: skip
    report = _check(client, keys)
    assert report["ok"] is True
    assert report["checks"]["energy_follows_register"]["detail"]["register_wh"] == 40_000

    _post(api_engine, UsagePosting("m1", 3, 1000, 41_000, [(c1, -400), (gen, 400)], "USD"))
    report = _check(client, keys)
    assert report["ok"] is False
    failed = {name for name, c in report["checks"].items() if not c["ok"]}
    assert failed == {"energy_follows_register"}
    detail = report["checks"]["energy_follows_register"]["detail"]
    assert detail["sample"] == [{"meter_id": "m1", "segment": 0, "first_seq": 1, "last_seq": 3,
                                 "posted_wh": 80_000, "unposted_wh": 0, "register_wh": 40_000,
                                 "bad_seq": 3}]  # fmt: skip


def test_a_reset_posted_as_a_new_segment_is_not(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    _post(api_engine, UsagePosting("m2", 1, 1000, 41_000, [], "USD"),
          UsagePosting("m2", 2, 0, 500, [], "USD", segment=1))  # fmt: skip
    report = _check(client, keys)
    assert report["ok"] is True, report
    detail = report["checks"]["energy_follows_register"]["detail"]
    assert (detail["segments"], detail["posted_wh"], detail["register_wh"]) == (2, 40_500, 40_500)
