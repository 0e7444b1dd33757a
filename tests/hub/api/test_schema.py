"""schemathesis against /openapi.json on every route with each role's key (admin, operator,
customer, provider; issue 20 item 3): no 5xx, every response matches its documented status
codes, content type and schema, for valid and invalid generated requests; the ledger
invariants hold afterwards. The examples per route are bounded (``EXAMPLES``, fewer for the
roles most routes refuse) to keep CI lean; ``SMSA_SCHEMATHESIS_SCALE=10`` runs ten times as
many by hand.

Uses schemathesis's Hypothesis strategies directly (its pytest plugin does not support pytest
9 yet). Needs the ``schemathesis`` package (test extra); skipped without it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from hub.db import session_scope
from hub.ledger import check_invariants, provider_account_id
from tests.hub.api.conftest import Shared, new_key

schemathesis = pytest.importorskip("schemathesis")

import requests  # noqa: E402  (a schemathesis dependency)
from schemathesis import GenerationMode, checks  # noqa: E402

SKIP = {"/api/v1/events/stream"}  # an endless stream, tested in test_events.py
SCALE = int(os.environ.get("SMSA_SCHEMATHESIS_SCALE", "1"))  # more examples, by hand
EXAMPLES = {
    "admin": {GenerationMode.POSITIVE: 6, GenerationMode.NEGATIVE: 4},
    "operator": {GenerationMode.POSITIVE: 3, GenerationMode.NEGATIVE: 2},
    "customer": {GenerationMode.POSITIVE: 3, GenerationMode.NEGATIVE: 2},
    "provider": {GenerationMode.POSITIVE: 3, GenerationMode.NEGATIVE: 2},
}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@pytest.mark.parametrize("role", list(EXAMPLES))
def test_api_conforms_to_its_schema(shared: Shared, role: str) -> None:
    url = str(shared.client.base_url).rstrip("/")
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    key = (
        new_key(shared.engine, "provider", provider_account_id("gen"))
        if role == "provider"
        else getattr(shared.keys, role)
    )
    headers = {"Authorization": f"Bearer {key}"}
    tested = []
    http = requests.Session()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIP:
            continue
        modes = [GenerationMode.POSITIVE]
        if len(operation.body) or len(operation.query):
            # A path id alone has no invalid form worth generating (any string is an id).
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=SCALE * EXAMPLES[role][mode], deadline=None, database=None,
                      derandomize=True, suppress_health_check=list(HealthCheck))  # fmt: skip
            def run(case: Any) -> None:
                case.call_and_validate(base_url=url, session=http, headers=headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                # An operation with nothing to get wrong (no body, no parameters).
                if mode is GenerationMode.POSITIVE:
                    raise
        tested.append(f"{operation.method.upper()} {operation.path}")
    http.close()
    assert len(tested) >= 20, tested
    with session_scope(shared.engine, write=False) as session:
        report = check_invariants(session)
    assert report["ok"], report
