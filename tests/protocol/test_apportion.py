"""Apportioning exact amounts into minor units: exact sums, no drift, no negative share; the
integer implementation (and its linear shortcut) equals the definition in Fractions."""

from collections.abc import Mapping
from fractions import Fraction
from math import floor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.apportion import apportion, apportion_linear, dump_carry, load_carry, split

PROVIDERS = ["gen-a", "gen-b", "trans", "dist", "retail"]
amount = st.fractions(min_value=0, max_value=500, max_denominator=10**6)
record = st.dictionaries(st.sampled_from(PROVIDERS), amount, min_size=1)


@given(st.lists(record, min_size=1, max_size=60))
def test_shares_sum_to_debit_and_never_drift(records: list[dict[str, Fraction]]) -> None:
    carry: dict[str, Fraction] = {}
    owed_total: dict[str, Fraction] = {}
    paid_total: dict[str, int] = {}
    debits = 0
    for amounts in records:
        shares, carry = apportion(amounts, carry)
        assert all(v >= 0 for v in shares.values())
        debits += sum(shares.values())
        for p, v in amounts.items():
            owed_total[p] = owed_total.get(p, Fraction(0)) + v
        for p, v in shares.items():
            paid_total[p] = paid_total.get(p, 0) + v
        exact = sum(owed_total.values(), Fraction(0))
        assert debits == floor(exact), "the customer is debited the whole part of what is owed"
        assert 0 <= sum(carry.values()) < 1
        for p, owed in owed_total.items():
            assert abs(owed - paid_total.get(p, 0)) < 2, "a provider never drifts"
    assert load_carry(dump_carry(carry)) == {p: v for p, v in carry.items() if v}


@given(st.lists(record, min_size=1, max_size=30))
def test_many_small_records_equal_their_total(records: list[dict[str, Fraction]]) -> None:
    carry: dict[str, Fraction] = {}
    small = 0
    total: dict[str, Fraction] = {}
    for amounts in records:
        shares, carry = apportion(amounts, carry)
        small += sum(shares.values())
        for p, v in amounts.items():
            total[p] = total.get(p, Fraction(0)) + v
    once, _ = apportion(total, {})
    assert abs(small - sum(once.values())) <= 1


def test_negative_amount_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        apportion({"gen": Fraction(-1)}, {})


@given(st.integers(0, 10**9), st.dictionaries(st.sampled_from(PROVIDERS), st.integers(0, 1000)))
def test_split_is_exact(total: int, weights: dict[str, int]) -> None:
    if sum(weights.values()) == 0:
        with pytest.raises(ValueError, match="contribute"):
            split(total, weights)
        return
    parts = split(total, weights)
    assert sum(parts.values()) == total
    assert all(parts[p] == 0 for p, w in weights.items() if w == 0)
    whole = sum(weights.values())
    assert all(abs(parts[p] - Fraction(total * w, whole)) < 1 for p, w in weights.items())


def definition(
    amounts: Mapping[str, Fraction], carry: Mapping[str, Fraction]
) -> tuple[dict[str, int], dict[str, Fraction]]:
    """What ``apportion`` computes, spelled out in Fractions (the test's oracle): the debit is
    the whole part of all that is owed, shared by what each provider is owed (rounded down),
    each unit left to the largest remainder, a tie to the later name."""
    providers = sorted(set(amounts) | set(carry))
    owed = {p: carry.get(p, Fraction(0)) + amounts.get(p, Fraction(0)) for p in providers}
    debit = floor(sum(owed.values(), Fraction(0)))
    shares = dict.fromkeys(providers, 0)
    positive = sum((v for v in owed.values() if v > 0), Fraction(0))
    if debit > 0 and positive > 0:
        for p in providers:
            if owed[p] > 0:
                shares[p] = floor(owed[p] * debit / positive)
    for _ in range(debit - sum(shares.values())):
        p = max(providers, key=lambda q: (owed[q] - shares[q], q))
        shares[p] += 1
    return shares, {p: owed[p] - shares[p] for p in providers}


fractions = st.fractions(min_value=0, max_value=10**4, max_denominator=10**8)
carries = st.fractions(min_value=-1, max_value=1, max_denominator=10**8)
names = st.sampled_from(["gen", "grid", "retail", "tax", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, fractions), st.dictionaries(names, carries))
def test_apportion_is_the_definition(
    amounts: dict[str, Fraction], carry: dict[str, Fraction]
) -> None:
    shares, new = apportion(amounts, carry)
    assert (shares, new) == definition(amounts, carry)
    assert list(new) == sorted(new)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(names, st.integers(0, 10**6), min_size=1),
    st.integers(1, 10**6),
    st.integers(0, 10**5),
    st.dictionaries(names, carries),
)
def test_linear_apportion_is_the_definition(
    rates: dict[str, int], d: int, energy: int, carry: dict[str, Fraction]
) -> None:
    amounts = {p: Fraction(r * energy, d) for p, r in rates.items()}
    assert apportion_linear(rates, d, energy, carry) == definition(amounts, carry)
