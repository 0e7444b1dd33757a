"""Who pays (claims 10, 11, 13) and shares by measured service (claim 15), exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.rating.mix import MixWindow, apply_mix, proportions
from hub.rating.payers import Sharer, SplitRuleError, payer_weights, portions

T0 = datetime(2026, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)


def test_one_customer_pays_alone() -> None:
    assert payer_weights("c1", (), None) == {"c1": 1}
    assert portions(101, {"c1": 1}) == {"c1": 101}
    assert portions(0, {"c1": 1}) == {}


def test_sharing_users_pay_by_weight_and_a_non_contributor_pays_nothing() -> None:
    sharers = (Sharer("a", 3), Sharer("b", 1), Sharer("lodger", 5, contributes=False))
    weights = payer_weights("a", sharers, None)
    assert weights == {"a": 3, "b": 1, "lodger": 0}
    assert portions(101, weights) == {"a": 76, "b": 25}


def test_a_split_rule_debits_several_accounts() -> None:
    weights = payer_weights("c1", (), {"accounts": {"sponsor": 1, "c1": 2}})
    assert portions(100, weights) == {"c1": 67, "sponsor": 33}
    for bad in ({"accounts": {"x": -1}}, {"accounts": {"x": "1"}}, {"accounts": {"x": 0}}):
        with pytest.raises(SplitRuleError):
            payer_weights("c1", (), bad)
    with pytest.raises(SplitRuleError):
        payer_weights(None, (), None)


@given(st.integers(0, 10**9), st.dictionaries(st.text(min_size=1, max_size=3),
                                              st.integers(0, 1000), min_size=1))  # fmt: skip
def test_portions_sum_exactly_and_are_never_negative(debit: int, weights: dict[str, int]) -> None:
    if not any(weights.values()):
        weights[next(iter(weights))] = 1
    parts = portions(debit, weights)
    assert sum(parts.values()) == debit
    assert all(v > 0 for v in parts.values())
    assert all(weights[a] > 0 for a in parts)


WINDOWS = [
    MixWindow("pool", T0, T0 + 2 * H, {"solar": 3, "hydro": 1}),
    MixWindow("pool", T0 + 2 * H, None, {"solar": 0, "hydro": 5}),
]


def test_proportions_follow_the_measured_mix_over_time() -> None:
    assert proportions(WINDOWS, T0, T0 + H) == {"pool": {"solar": Fraction(3, 4),
                                                          "hydro": Fraction(1, 4)}}  # fmt: skip
    # half the interval in each window: solar 3/8, hydro 1/8 + 1/2
    mixed = proportions(WINDOWS, T0 + H, T0 + 3 * H)["pool"]
    assert mixed == {"solar": Fraction(3, 8), "hydro": Fraction(5, 8)}
    assert proportions(WINDOWS, T0 - 2 * H, T0 - H) == {}
    assert proportions(WINDOWS, T0 + 5 * H, T0 + 5 * H) == {"pool": {"hydro": Fraction(1)}}


def test_windows_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        MixWindow("pool", T0, T0, {"a": 1})
    with pytest.raises(ValueError):
        MixWindow("pool", T0, None, {"a": 0})
    with pytest.raises(ValueError):
        MixWindow("pool", T0, None, {"a": -1, "b": 2})


@given(
    st.fractions(min_value=0, max_value=1000, max_denominator=10**6),
    st.integers(0, 6 * 3600),
    st.integers(0, 6 * 3600),
)
def test_apply_mix_keeps_the_amount_exactly(amount: Fraction, a: int, b: int) -> None:
    start, end = T0 + timedelta(seconds=min(a, b)), T0 + timedelta(seconds=max(a, b))
    mix = proportions(WINDOWS, start, end)
    out = apply_mix({"pool": amount, "grid": Fraction(1, 3)}, mix)
    assert sum(out.values()) == amount + Fraction(1, 3)
    assert all(v >= 0 for v in out.values())
    assert "pool" not in out or not mix
