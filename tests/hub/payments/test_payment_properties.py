"""Hypothesis on a real ledger (SQLite): any sequence of monthly bills and payments of a
postpaid customer keeps every ledger invariant (the allocation checks among them) true, each
payment's allocations plus its credit equal it exactly, and what was allocated is always
``min(paid, billed)``: payments pay bills as soon as both exist, and carried credit is applied
when the next bill is issued."""

from __future__ import annotations

import itertools
from datetime import UTC, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select

from hub.billing.periods import Period
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.db import read_tx, run_tx
from hub.payments.store import allocations, payments
from tests.hub.payments.charges import charge, customer, providers
from tests.hub.payments.ledgerpay import document, invariants, pay

SETTINGS = BillingSettings(timezone="UTC")
RUNS = itertools.count()  # each example bills periods of its own (a period is billed once)

shares = st.dictionaries(st.sampled_from(["gen", "grid", "ret", "plat"]), st.integers(0, 50_000),
                         min_size=1)  # fmt: skip
month = st.tuples(st.just("month"), shares)
payment = st.tuples(st.just("pay"), st.integers(1, 80_000))
operations = st.lists(st.one_of(month, payment), min_size=1, max_size=8)


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_bills_and_payments_keep_allocations_exact(
    sqlite_engine: Engine, ops: list[tuple[Any, ...]]
) -> None:
    engine = sqlite_engine
    run = next(RUNS)
    providers(engine)
    who = f"h{run}"
    customer(engine, who)
    period = Period(1990 + run, 1)
    paid = billed = 0
    ids: list[int] = []
    for op in ops:
        start = period.start(UTC)
        if op[0] == "month":
            billed += charge(engine, who, start + timedelta(days=3), op[1])
            now = period.next().start(UTC)
            run_tx(engine, lambda s, p=period, n=now: run_billing(s.connection(), p, SETTINGS, n))
            period = period.next()
        else:
            at = start + timedelta(days=1, seconds=len(ids))
            ids.append(pay(engine, who, op[1], f"{who}-{len(ids)}", at=at))
            paid += op[1]
    assert invariants(engine) == {}
    for payment_id in ids:
        doc = document(engine, payment_id)
        cents = [_minor(a["amount"]) for a in doc["allocations"]]
        assert sum(cents) + _minor(doc["credit"]) == _minor(doc["amount"])
    with read_tx(engine) as conn:
        allocated = conn.execute(
            select(func.coalesce(func.sum(allocations.c.amount), 0))
            .join(payments, payments.c.id == allocations.c.payment_id)
            .where(payments.c.account_id == who)
        ).scalar_one()
    assert allocated == min(paid, billed)


def _minor(text: str) -> int:
    units, cents = text.split(".")
    return int(units) * 100 + int(cents)
