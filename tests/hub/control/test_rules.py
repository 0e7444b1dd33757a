"""Hub-only credit rules (pure): alternate draws, emergency floor, top-up split, rule parsing."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from hub.control.rules import (
    CustomerRules,
    Memory,
    Policy,
    RulesError,
    at_rest,
    draw_amount,
    emergency_floor,
    evaluate,
    recovery,
    split_rules,
    stored_rules,
)
from protocol.messages import CreditRules, FriendlyWindow

MONDAY = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
money = st.integers(min_value=0, max_value=10**9)
balances = st.integers(min_value=-(10**9), max_value=10**9)
shares = st.none() | st.fractions(min_value=0, max_value=1, max_denominator=100)


@given(amount=st.integers(1, 10**9), before=balances, emergency=money, debt=money, share=shares)
def test_a_topup_is_split_exactly(
    amount: int, before: int, emergency: int, debt: int, share: Fraction | None
) -> None:
    r = recovery(amount, before, emergency_in_use=emergency, debt=debt, share=share)
    parts = (r.emergency_repaid, r.debt_recovered, r.credit, r.debt_moved, r.debt_outstanding)
    assert all(p >= 0 for p in parts)
    assert r.emergency_repaid + r.debt_recovered + r.credit == amount, "no money lost or made"
    used = min(max(0, -before), emergency)
    assert r.emergency_repaid == min(used, amount), "emergency credit is repaid first"
    if r.credit > 0 or r.debt_recovered > 0:
        assert r.emergency_outstanding == 0, "nothing else before emergency is repaid in full"
    if share is None:
        assert r.transfer == 0 and r.balance_after == before + amount
    else:
        assert r.debt_recovered <= share * amount
        assert r.debt_outstanding == debt + r.debt_moved - r.debt_recovered
        if r.emergency_outstanding == 0:
            assert r.balance_after == max(before, 0) + r.credit, "the meter gets the credit"
    assert r.floor_restored == (r.balance_after >= 0)


def test_recovery_example_from_uk_practice() -> None:
    # 5.00 emergency credit used and 10.00 debt; a 20.00 top-up with 25 % recovery
    r = recovery(2000, -1500, emergency_in_use=500, debt=0, share=Fraction(1, 4))
    assert (r.emergency_repaid, r.debt_recovered, r.credit) == (500, 500, 1000)
    assert (r.debt_moved, r.debt_outstanding, r.transfer, r.balance_after) == (1000, 500, 500, 1000)


@given(balance=balances, fixed=st.integers(1, 10**6), limit=st.none() | st.integers(1, 10**6),
       available=st.none() | money, level=st.integers(-1000, 10**6), off=st.booleans())  # fmt: skip
def test_draws_respect_every_limit(  # noqa: PLR0917 (hypothesis passes them by name)
    balance: int, fixed: int, limit: int | None, available: int | None, level: int, off: bool
) -> None:
    for rule in ("needed", fixed):
        policy = Policy(alternate_draw=rule, alternate_limit=limit)
        x = draw_amount(balance, policy, reconnect_above=level, available=available, relay_off=off)
        assert x >= 0
        if balance >= 0:
            assert x == 0, "no draw while in credit"
        if limit is not None:
            assert x <= limit
        if available is not None:
            assert x <= available, "never past the alternate account's floor"
        unconstrained = limit is None and available is None and balance < 0
        if unconstrained and rule == "needed":
            assert balance + x == max(level, 0) + (1 if off else 0)
        if unconstrained and rule == fixed:
            assert x == fixed, "exactly the rule's amount"


def test_no_draw_without_a_rule() -> None:
    assert draw_amount(-50, Policy(alternate_draw=None), reconnect_above=0, available=None) == 0


@given(balance=balances, floor=st.none() | st.integers(-1000, 0), credit=money)
def test_emergency_credit_once_per_exhaustion(balance: int, floor: int | None, credit: int) -> None:
    new = emergency_floor(balance, floor, credit)
    if new is not None:
        assert balance < 0 and credit > 0 and new == -credit
        assert emergency_floor(balance, new, credit) is None, "taken once until repaid"
    elif balance < 0 and credit > 0:
        assert floor is not None and floor < 0


def test_rules_split_into_protocol_and_hub_parts() -> None:
    proto, hub = split_rules({"low_credit": [500, 100], "grace_s": 600, "alternate_draw": 300,
                              "alternate_limit": 1000, "debt_recovery_share": 0.25})  # fmt: skip
    assert proto == {"low_credit": [500, 100], "grace_s": 600}
    assert hub == {"alternate_draw": 300, "alternate_limit": 1000, "debt_recovery_share": "0.25"}
    assert Policy.from_flags({"credit_policy": hub}).debt_recovery_share == Fraction(1, 4)


@pytest.mark.parametrize(
    ("given_rules", "field"),
    [
        ({"grace_s": -1}, "grace_s"),
        ({"debt_recovery_share": 2}, "debt_recovery_share"),
        ({"debt_recovery_share": True}, "debt_recovery_share"),
        ({"alternate_draw": "some"}, "alternate_draw"),
        ({"alternate_limit": 0}, "alternate_limit"),
        ({"bogus": 1}, "bogus"),
        ({"friendly": [{"start": "25:00", "end": "08:00"}]}, "friendly"),
    ],
)
def test_bad_rules_name_the_field(given_rules: dict[str, object], field: str) -> None:
    with pytest.raises(RulesError) as caught:
        split_rules(given_rules)
    assert caught.value.field.startswith(field)


def test_customer_rules_as_the_api_takes_them() -> None:
    given = {"low_credit": [500], "friendly": [{"start": "16:00", "end": "08:00"}],
             "alternate_draw": "needed", "alternate_limit": 2000,
             "debt_recovery_share": 0.25}  # fmt: skip
    proto, hub = CustomerRules.model_validate(given).split()
    assert proto["low_credit"] == [500] and proto["friendly"][0]["start"] == "16:00:00"
    assert hub == {"alternate_draw": "needed", "alternate_limit": 2000,
                   "debt_recovery_share": "0.25"}  # fmt: skip
    back = stored_rules({"credit_rules": proto, "credit_policy": hub})
    assert CustomerRules.model_validate(back).split() == (proto, hub)
    with pytest.raises(ValidationError):
        CustomerRules.model_validate({"debt_recovery_share": "1.5"})
    with pytest.raises(ValidationError):
        CustomerRules.model_validate({"unknown": 1})


memories = st.sampled_from([Memory(), Memory(in_credit=True)]) | st.builds(
    Memory,
    relay=st.sampled_from(["connected", "disconnected"]),
    cut_by_rules=st.booleans(),
    prompted=st.lists(st.integers(0, 2000), max_size=3).map(tuple),
    exhausted_since=st.none() | st.just(MONDAY),
    exhausted_prompted=st.booleans(),
    emergency_prompted=st.booleans(),
    friendly_since=st.none() | st.just(MONDAY),
    friendly_ok=st.booleans(),
    in_credit=st.none() | st.booleans(),
)
rule_sets = st.builds(
    CreditRules,
    low_credit=st.lists(st.integers(-500, 2000), max_size=3).map(tuple),
    reconnect_above=st.integers(-500, 2000),
    emergency_credit=st.integers(0, 500),
    grace_s=st.integers(0, 3600),
    friendly=st.sampled_from([(), (FriendlyWindow(start=time(16), end=time(8)),)]),
    protected=st.booleans(),
)


@given(balance=st.integers(-3000, 3000) | st.integers(2001, 10**6), rules=rule_sets,
       memory=memories,
       hours=st.integers(0, 24 * 7))  # fmt: skip
def test_a_meter_at_rest_needs_no_evaluation(
    balance: int, rules: CreditRules, memory: Memory, hours: int
) -> None:
    if not at_rest(balance, rules, memory):
        return  # (often: filtering would trip hypothesis' health check)
    decision, after = evaluate(balance, rules, ZoneInfo("UTC"), memory,
                               MONDAY + timedelta(hours=hours))  # fmt: skip
    assert decision.action == "none"
    ignored = {"in_credit", "friendly_since", "friendly_ok"}  # rebuilt on the next evaluation
    assert after.model_dump(exclude=ignored) == memory.model_dump(exclude=ignored)
