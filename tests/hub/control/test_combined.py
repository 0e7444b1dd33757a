"""Credit control of a shared meter follows its payers' COMBINED credit (hub.control.combined):
a hypothesis property against a model computed here, on a real server and SQLite file.

Each example makes payers through the API (a balance, emergency credit, an alternate account
with money, protection), a meter shared by weight (with a non-contributor holding money that
must not count), posts one interval's usage split by weight as ingest does, and runs credit
control. The model: the meter is exhausted when the contributing payers' balances plus their
emergency credit plus their alternate accounts' money are below zero together; it is then cut
off unless a contributing payer is protected (an ``operator_alert`` instead). The ledger's
invariants hold after each example (``GET /ledger/check``)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from hub import ledger
from hub.control.credit_state import credit_state
from hub.control.engine import CreditControl
from hub.db import read_tx, run_tx
from hub.ledger import UsagePosting
from protocol.apportion import split
from tests.hub.api.conftest import Keys

_ids = itertools.count(1)


@dataclass(frozen=True)
class Payer:
    weight: int
    balance: int  # topped up before the usage
    emergency: int
    alternate: int | None  # money in its alternate account (None: no alternate account)
    protected: bool


payers = st.builds(
    Payer,
    weight=st.integers(1, 3),
    balance=st.integers(0, 2000),
    emergency=st.sampled_from([0, 0, 300]),
    alternate=st.one_of(st.none(), st.integers(0, 800)),
    protected=st.sampled_from([False, False, False, True]),
)


def _post(client: httpx.Client, keys: Keys, path: str, body: dict[str, object]) -> None:
    r = client.post(f"/api/v1{path}", json=body, headers=keys.h("admin"))
    assert r.status_code == 201, (path, r.text)


def _topup(client: httpx.Client, keys: Keys, account: str, cents: int) -> None:
    if cents <= 0:
        return
    headers = {**keys.h("admin"), "Idempotency-Key": uuid.uuid4().hex}
    body = {"amount": f"{cents // 100}.{cents % 100:02d}", "reference": "test"}
    r = client.post(f"/api/v1/accounts/{account}/topups", json=body, headers=headers)
    assert r.status_code == 201, r.text


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(group=st.lists(payers, min_size=2, max_size=3), bystander=st.integers(0, 5000),
       usage=st.integers(1, 6000))  # fmt: skip
def test_a_shared_meter_is_cut_when_its_payers_together_cannot_cover_it(  # noqa: PLR0917
    client: httpx.Client, keys: Keys, api_engine: Engine, group: list[Payer], bystander: int,
    usage: int,
) -> None:  # fmt: skip
    n = next(_ids)
    names = [f"p{n}x{i}" for i in range(len(group))]
    for name, p in zip(names, group, strict=True):
        body: dict[str, object] = {"id": name, "name": name, "protected": p.protected,
                                   "credit_rules": {"emergency_credit": p.emergency}}  # fmt: skip
        if p.alternate is not None:
            _post(client, keys, "/accounts", {"id": f"alt-{name}", "name": "alt"})
            _topup(client, keys, f"alt-{name}", p.alternate)
            body["alternate_account"] = f"alt-{name}"
        _post(client, keys, "/customers", body)
        _topup(client, keys, name, p.balance)
    idle = f"p{n}idle"
    _post(client, keys, "/customers", {"id": idle, "name": "idle"})
    _topup(client, keys, idle, bystander)
    meter = f"m-shared-{n}"
    sharers = [{"customer": c, "weight": p.weight} for c, p in zip(names, group, strict=True)]
    sharers.append({"customer": idle, "weight": 0})
    _post(client, keys, "/meters", {"id": meter, "gateway": "gw1", "customer": names[0],
                                    "tariff": "t1", "sharers": sharers})  # fmt: skip

    # one interval's usage, split by weight exactly as the ingest planner splits it
    weights = {c: p.weight for c, p in zip(names, group, strict=True)} | {idle: 0}
    portions = {a: v for a, v in split(usage, weights).items() if v}
    lines = [(a, -v) for a, v in sorted(portions.items())] + [("provider:gen", usage)]
    at = datetime.now(UTC)
    posting = UsagePosting(meter, 1, 0, 100, lines, "USD", interval_start=at, interval_end=at)
    result = run_tx(api_engine, lambda s: ledger.post_usage_batch(s, [posting]))
    assert not result.rejected
    CreditControl(api_engine).after_postings([meter])

    # the model
    left = sum(p.balance for p in group) - usage
    cover = sum(p.emergency + (p.alternate or 0) for p in group)
    exhausted = left < -cover
    protected = any(p.protected for p in group)
    event(f"exhausted={exhausted} protected={protected}")

    def events(kind: str) -> list[dict[str, object]]:
        r = client.get("/api/v1/events", params={"kind": kind, "meter": meter},
                       headers=keys.h("operator"))  # fmt: skip
        assert r.status_code == 200, r.text
        return list(r.json())

    cuts, alerts = events("disconnect"), events("operator_alert")
    assert bool(cuts) == (exhausted and not protected), (group, usage, left, cover, cuts)
    assert bool(alerts) == (exhausted and protected), (group, usage, alerts)
    for cut in cuts:
        assert cut["data"]["payers"] == sorted(names), cut  # type: ignore[index]
    # the state the agent is sent carries the payers' sum (the alternate draws moved money in)
    with read_tx(api_engine) as conn:
        state = credit_state(conn, meter).state
    balances = [_balance(client, keys, c) for c in names]
    assert state.balance == sum(balances)
    assert state.rules.protected == protected
    assert state.rules.emergency_credit == sum(p.emergency for p in group)
    assert (state.balance < -(state.rules.emergency_credit + state.rules.alternate_available)) == (
        exhausted
    )
    assert _balance(client, keys, idle) == bystander  # the non-contributor pays nothing
    check = client.get("/api/v1/ledger/check", headers=keys.h("operator"))
    assert check.status_code == 200 and check.json()["ok"] is True, check.text


def _balance(client: httpx.Client, keys: Keys, account: str) -> int:
    r = client.get(f"/api/v1/accounts/{account}", headers=keys.h("operator"))
    assert r.status_code == 200, r.text
    return int(Decimal(r.json()["balance"]) * 100)
