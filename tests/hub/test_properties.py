"""Hypothesis: random sequences of top-ups, shared-cost usage batches, replays and reversals
keep every invariant, and balances equal a plain Python model of the same operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlmodel import Session

from hub import ledger
from hub.db import read_tx, run_tx
from hub.ledger import UsagePosting
from tests.hub.world import World, failed, make_world


@dataclass
class Model:
    balances: dict[str, int] = field(default_factory=dict)
    registers: dict[str, int] = field(default_factory=dict)
    seqs: dict[str, int] = field(default_factory=dict)
    batches: list[list[UsagePosting]] = field(default_factory=list)
    entries: list[tuple[int, list[tuple[str, int]]]] = field(default_factory=list)
    reversed: set[int] = field(default_factory=set)

    def apply(self, lines: list[tuple[str, int]]) -> None:
        for account, amount in lines:
            self.balances[account] = self.balances.get(account, 0) + amount


def split(cost: int, weights: list[int]) -> list[int]:
    """Integer shares of ``cost`` proportional to ``weights``; the remainder to the first."""
    total = sum(weights)
    shares = [cost * wt // total for wt in weights]
    shares[0] += cost - sum(shares)
    return shares


topup = st.tuples(st.just("topup"), st.integers(0, 1), st.integers(1, 10**7))
usage = st.tuples(
    st.just("usage"), st.integers(0, 1),
    st.lists(st.tuples(st.integers(0, 5000), st.integers(0, 10**5)), min_size=1, max_size=5),
    st.lists(st.integers(1, 100), min_size=3, max_size=3),
)  # fmt: skip
replay = st.tuples(st.just("replay"), st.integers(0, 100))
reverse = st.tuples(st.just("reverse"), st.integers(0, 100))
operations = st.lists(st.one_of(topup, usage, replay, reverse), min_size=1, max_size=12)


def run_op(s: Session, w: World, m: Model, op: tuple[Any, ...]) -> None:
    kind = op[0]
    if kind == "topup":
        c, amount = w.customers[op[1]], op[2]
        res = ledger.post_topup(s, c, amount, idempotency_key=f"t{len(m.entries)}")
        lines = [(ledger.clearing_account_id("USD"), -amount), (c, amount)]
        m.entries.append((res.entry_id, lines))
        m.apply(lines)
    elif kind == "usage":
        meter, customer = w.meters[op[1]], w.customers[op[1]]
        batch = []
        for energy, cost in op[2]:
            seq = m.seqs.get(meter, 0) + 1
            start = m.registers.get(meter, 1000)
            shares = split(cost, op[3])
            lines = [(customer, -cost)] + [
                (p, x) for p, x in zip(w.providers, shares, strict=True) if x
            ]
            batch.append(
                UsagePosting(meter, seq, start, start + energy, lines if cost else [], "USD")
            )
            m.seqs[meter], m.registers[meter] = seq, start + energy
        result = ledger.post_usage_batch(s, batch)
        assert len(result.posted) == len(batch) and not result.rejected
        for (_, _, entry_id), p in zip(result.posted, batch, strict=True):
            m.apply(list(p.lines))
            if p.lines:
                m.entries.append((entry_id, list(p.lines)))
        m.batches.append(batch)
    elif kind == "replay" and m.batches:
        batch = m.batches[op[1] % len(m.batches)]
        result = ledger.post_usage_batch(s, batch)
        assert not result.posted and len(result.duplicates) == len(batch)
    elif kind == "reverse" and m.entries:
        entry_id, lines = m.entries[op[1] % len(m.entries)]
        if entry_id not in m.reversed:
            rev = ledger.post_reversal(s, entry_id)
            m.reversed.add(entry_id)
            negated = [(a, -x) for a, x in lines]
            m.entries.append((rev, negated))
            m.apply(negated)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_random_postings_keep_every_invariant(engine: Engine, ops: list[tuple[Any, ...]]) -> None:
    w = make_world(engine, n_providers=3, n_customers=2)
    for c in w.customers:  # usage may leave a customer owing: no floor here
        run_tx(engine, partial(ledger.set_floor, account_id=c, floor=None))
    m = Model()
    for op in ops:
        run_tx(engine, partial(run_op, w=w, m=m, op=op))
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
        for account in w.customers + w.providers:
            assert ledger.get_account(conn, account).balance == m.balances.get(account, 0)
    assert report["ok"], failed(report)
