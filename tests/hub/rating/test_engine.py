"""The rating glue as properties: entries balance, shares sum exactly to the debit, no share is
negative, N small intervals cost their total within one minor unit, and block, time-of-use and
month boundaries are priced right."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from math import floor

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.rating.engine import rate
from hub.rating.payers import portions
from hub.rating.state import MeterState
from protocol.messages import UsageRecord
from protocol.rating import price_interval
from protocol.tariff import Tariff

FLAT = Tariff.model_validate({"id": "flat", "currency": "USD", "components": [
    {"provider": "gen", "per_kwh": "0.1234"}, {"provider": "grid", "per_kwh": "0.0517"},
    {"provider": "tax", "tax_rate": "0.16"}]})  # fmt: skip
BLOCKS = Tariff.model_validate({"id": "ibt", "currency": "USD", "components": [
    {"provider": "gen", "blocks": [{"up_to": "1", "price": "0.10"}, {"up_to": "2", "price": "0.20"},
                                   {"price": "0.30"}]},
    {"provider": "grid", "per_kwh": "0.0333"}]})  # fmt: skip
TOU = Tariff.model_validate({"id": "tou", "currency": "USD", "timezone": "Africa/Nairobi",
    "components": [{"provider": "gen", "per_kwh": "0.10", "tou": [
        {"start": "18:00", "end": "22:00", "price": "0.30"},
        {"days": [5, 6], "start": "23:00", "end": "06:00", "price": "0.05"}]},
        {"provider": "vat", "tax_rate": "0.16"}]})  # fmt: skip
TARIFFS = [FLAT, BLOCKS, TOU]
T0 = datetime(2026, 1, 31, 16, 0, tzinfo=UTC)  # a month end and evening peaks inside the runs


def _record(seq: int, start: datetime, end: datetime, reg: int, energy: int) -> UsageRecord:
    return UsageRecord(meter="m", seq=seq, start=start, end=end, import_start=reg,
                       import_end=reg + energy)  # fmt: skip


def _run(tariff: Tariff, energies: list[int], step: timedelta) -> tuple[int, Fraction]:
    """Rate consecutive intervals; return (total debit, total exact amount)."""
    state, debit, exact, reg, t = MeterState(), 0, Fraction(0), 0, T0
    for seq, energy in enumerate(energies, start=1):
        rated = rate(tariff, state, _record(seq, t, t + step, reg, energy))
        assert all(v >= 0 for v in rated.shares.values())
        assert sum(rated.shares.values()) == rated.debit
        debit += rated.debit
        exact += sum(rated.amounts.values())
        state, reg, t = rated.state, reg + energy, t + step
        assert state.seq == seq and state.register == reg
    return debit, exact


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(TARIFFS),
    st.lists(st.integers(0, 3000), min_size=1, max_size=40),
    st.integers(60, 4 * 3600),
    st.dictionaries(st.sampled_from(["a", "b", "c", "sponsor"]), st.integers(0, 9), min_size=1),
)
def test_every_entry_balances_and_nothing_drifts(
    tariff: Tariff, energies: list[int], step_s: int, weights: dict[str, int]
) -> None:
    if not any(weights.values()):
        weights["a"] = 1
    state, reg, t, debits, exact = MeterState(), 0, T0, 0, Fraction(0)
    for seq, energy in enumerate(energies, start=1):
        rated = rate(tariff, state, _record(seq, t, t + timedelta(seconds=step_s), reg, energy))
        payers = portions(rated.debit, weights)
        lines = [-v for v in payers.values()] + [v for v in rated.shares.values() if v]
        assert sum(lines) == 0, "the entry balances"
        assert all(v > 0 for v in payers.values())
        assert all(weights[a] > 0 for a in payers), "a non-contributing user pays nothing"
        debits += rated.debit
        exact += sum(rated.amounts.values())
        assert debits == floor(exact), "the customer pays the whole part of what is owed"
        state, reg, t = rated.state, reg + energy, t + timedelta(seconds=step_s)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TARIFFS), st.integers(1, 30), st.integers(0, 400), st.integers(1, 240))
def test_n_small_intervals_cost_their_total_within_one_unit(
    tariff: Tariff, n: int, each: int, minutes: int
) -> None:
    step = timedelta(minutes=minutes)
    small, small_exact = _run(tariff, [each] * n, step)
    one = rate(tariff, MeterState(), _record(1, T0, T0 + step * n, 0, each * n))
    assert sum(one.amounts.values()) == small_exact, "energy spread evenly: same exact charge"
    assert abs(small - one.debit) <= 1


def test_block_boundary_counts_month_to_date() -> None:
    # 900 Wh already this month: the next 200 Wh are 100 at 0.10 and 100 at 0.20 per kWh
    state = MeterState(month="2026-03", mtd=Fraction(900))
    t = datetime(2026, 3, 10, tzinfo=UTC)
    rated = rate(BLOCKS, state, _record(1, t, t + timedelta(hours=1), 0, 200))
    gen = Fraction(100 * 10 + 100 * 20, 1000)  # cents
    assert rated.amounts["gen"] == gen
    assert rated.state.mtd == 1100
    # a new month starts the blocks again
    t2 = datetime(2026, 4, 1, 1, tzinfo=UTC)
    rated2 = rate(BLOCKS, rated.state, _record(2, t2, t2 + timedelta(hours=1), 200, 200))
    assert rated2.amounts["gen"] == Fraction(200 * 10, 1000)
    assert rated2.state.month == "2026-04" and rated2.state.mtd == 200


def test_an_interval_across_the_month_end_keeps_only_the_new_months_energy() -> None:
    start = datetime(2026, 3, 31, 23, tzinfo=UTC)
    rated = rate(BLOCKS, MeterState(), _record(1, start, start + timedelta(hours=2), 0, 1000))
    assert rated.state.month == "2026-04"
    assert rated.state.mtd == 500


def test_tou_window_edges() -> None:
    # Nairobi is UTC+3: 14:30-15:30 UTC is 17:30-18:30 local, half at 0.10, half at 0.30
    start = datetime(2026, 3, 10, 14, 30, tzinfo=UTC)
    rated = rate(TOU, MeterState(), _record(1, start, start + timedelta(hours=1), 0, 1000))
    assert rated.amounts["gen"] == Fraction(500 * 10 + 500 * 30, 1000)
    assert rated.amounts["vat"] == rated.amounts["gen"] * Fraction(16, 100)
    assert rated.amounts == price_interval(TOU, start, start + timedelta(hours=1), 1000)


def test_a_late_record_moves_the_carry_but_not_the_sequence() -> None:
    t = datetime(2026, 3, 10, tzinfo=UTC)
    state = MeterState(seq=5, month="2026-03", mtd=Fraction(100), register=500)
    rated = rate(FLAT, state, _record(3, t, t + timedelta(minutes=15), 300, 37), in_order=False)
    assert rated.state.seq == 5 and rated.state.register == 500
    assert rated.state.mtd == 137


def test_state_round_trips() -> None:
    state = MeterState(seq=7, carry={"a": Fraction(1, 3), "b": Fraction(-2, 7)},
                       month="2026-03", mtd=Fraction(7, 2), register=99)  # fmt: skip
    assert MeterState.load(state.dump()) == state
    assert MeterState.load(None) == MeterState()
    assert MeterState.load('{"a": "1/2"}').carry == {"a": Fraction(1, 2)}
