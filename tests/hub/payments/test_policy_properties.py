"""Hypothesis on the pure allocation policy: whatever the open bills and the amount, the
allocations plus the credit equal the amount, no provider gets more than it is owed, bills are
paid oldest first, a bill's providers share a partial payment in proportion to what they are
owed (exactly, as ``protocol.apportion.split``), and fees-first pays the platform first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hub.payments.policy import POLICIES, Due, OpenBill, allocate, policy
from protocol.apportion import split

TIERS = {"gen": "generation", "grid": "distribution", "ret": "retail", "plat": "platform"}

dues = st.dictionaries(st.sampled_from(sorted(TIERS)), st.integers(0, 10**6), min_size=1)
bills = st.lists(st.tuples(st.integers(2020, 2030), st.integers(1, 12), dues), max_size=6)


def open_bills(raw: list[tuple[int, int, dict[str, int]]]) -> list[OpenBill]:
    return [
        OpenBill(n + 1, f"{y:04d}-{m:02d}", tuple(Due(p, TIERS[p], v) for p, v in d.items()))
        for n, (y, m, d) in enumerate(raw)
    ]


@given(bills, st.integers(0, 5 * 10**6), st.sampled_from(sorted(POLICIES)))
def test_allocations_are_exact_and_oldest_first(
    raw: list[tuple[int, int, dict[str, int]]], amount: int, version: str
) -> None:
    rules = policy(version)
    given_bills = open_bills(raw)
    result = allocate(amount, given_bills, rules)
    assert sum(a.amount for a in result.allocations) + result.credit == amount
    assert all(a.amount > 0 for a in result.allocations) and result.credit >= 0
    owed = {(b.id, d.provider): d.remaining for b in given_bills for d in b.dues}
    paid: dict[tuple[int, str], int] = {}
    for a in result.allocations:
        paid[(a.bill, a.provider)] = paid.get((a.bill, a.provider), 0) + a.amount
        assert a.tier == TIERS[a.provider]
    assert all(v <= owed[k] for k, v in paid.items())
    total_owed = sum(owed.values())
    assert result.credit == max(0, amount - total_owed)
    ordered = sorted(given_bills, key=lambda b: (b.period, b.id))
    for n, b in enumerate(ordered):  # a bill gets something only once every older one is paid
        if any(paid.get((b.id, d.provider)) for d in b.dues):
            for older in ordered[:n]:
                assert all(paid.get((older.id, d.provider), 0) == d.remaining
                           for d in older.dues)  # fmt: skip
    if rules.first_tiers or not ordered:
        return
    first = ordered[0]  # the oldest bill's providers share what it got in proportion
    got = sum(paid.get((first.id, d.provider), 0) for d in first.dues)
    weights = {d.provider: d.remaining for d in first.dues if d.remaining}
    if weights:
        expected = split(got, weights)
        assert {p: paid.get((first.id, p), 0) for p in weights} == expected


@given(bills, st.integers(0, 5 * 10**6))
def test_fees_first_pays_the_platform_before_the_rest(
    raw: list[tuple[int, int, dict[str, int]]], amount: int
) -> None:
    given_bills = open_bills(raw)
    result = allocate(amount, given_bills, policy("1-fees-first"))
    for b in given_bills:
        fee = next((d.remaining for d in b.dues if d.provider == "plat"), 0)
        got = {a.provider: a.amount for a in result.allocations if a.bill == b.id}
        if sum(got.values()) - got.get("plat", 0) > 0:
            assert got.get("plat", 0) == fee
