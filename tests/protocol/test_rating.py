"""Pricing usage with a tariff: flat, time-of-use, inclining blocks, taxes, standing charges."""

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from protocol.rating import price_interval, standing_charges
from protocol.tariff import Tariff

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

FLAT = Tariff.model_validate(
    {
        "id": "flat",
        "currency": "USD",
        "components": [
            {"provider": "gen", "per_kwh": "0.1234"},
            {"provider": "dist", "per_kwh": "0.05", "per_day": "0.30"},
            {"provider": "gov", "tax_rate": "0.16"},
        ],
    }
)
BLOCKS = Tariff.model_validate(
    {
        "id": "ibt",
        "currency": "USD",
        "components": [
            {
                "provider": "retail",
                "blocks": [
                    {"up_to": "50", "price": "0.10"},
                    {"up_to": "350", "price": "0.20"},
                    {"price": "0.30"},
                ],
            }
        ],
    }
)
TOU = Tariff.model_validate(
    {
        "id": "tou",
        "currency": "USD",
        "timezone": "Africa/Nairobi",
        "components": [
            {
                "provider": "gen",
                "per_kwh": "0.10",
                "tou": [
                    {"start": "18:00", "end": "22:00", "price": "0.30"},
                    {"days": [5, 6], "start": "23:00", "end": "06:00", "price": "0.05"},
                ],
            }
        ],
    }
)


def test_flat_with_tax() -> None:
    amounts = price_interval(FLAT, T0, T0 + timedelta(hours=1), 1000)
    assert amounts["gen"] == Fraction("12.34")
    assert amounts["dist"] == Fraction(5)
    assert amounts["gov"] == Fraction("17.34") * Fraction("0.16")


def test_standing_charge_is_daily_and_taxed() -> None:
    assert standing_charges(FLAT, 2) == {
        "dist": Fraction(60),
        "gov": Fraction(60) * Fraction("0.16"),
    }


def test_block_boundary_priced_on_both_sides() -> None:
    # 40 kWh already this month; 20 kWh more: 10 at 0.10 and 10 at 0.20 = 3.00 USD.
    amounts = price_interval(BLOCKS, T0, T0 + timedelta(hours=1), 20_000, month_to_date=40_000)
    assert amounts["retail"] == Fraction(300)


def test_blocks_reset_at_the_start_of_the_month() -> None:
    end_of_month = datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
    # 2 kWh over two hours, half in March (at the top block) and half in April (first block).
    amounts = price_interval(
        BLOCKS, end_of_month, end_of_month + timedelta(hours=2), 2000, month_to_date=400_000
    )
    assert amounts["retail"] == Fraction(30) + Fraction(10)


def test_tou_window_edge_splits_the_interval() -> None:
    # 17:59 to 18:01 Nairobi time (UTC+3): one minute at 0.10, one at 0.30.
    start = datetime(2026, 3, 10, 14, 59, tzinfo=UTC)
    amounts = price_interval(TOU, start, start + timedelta(minutes=2), 2000)
    assert amounts["gen"] == Fraction(10) + Fraction(30)


def test_tou_window_wrapping_midnight_counts_from_its_start_day() -> None:
    saturday_2am = datetime(2026, 3, 14, 2, 0, tzinfo=UTC) - timedelta(hours=3)
    sunday_2am = saturday_2am + timedelta(days=1)
    monday_2am = sunday_2am + timedelta(days=1)
    # Friday-night 02:00 Saturday is outside (window days are Sat, Sun starts).
    assert price_interval(TOU, saturday_2am, saturday_2am, 1000)["gen"] == Fraction(10)
    assert price_interval(TOU, sunday_2am, sunday_2am, 1000)["gen"] == Fraction(5)
    assert price_interval(TOU, monday_2am, monday_2am, 1000)["gen"] == Fraction(5)


@given(
    st.lists(st.tuples(st.integers(1, 7200), st.integers(0, 50_000)), min_size=1, max_size=25),
    st.integers(0, 400_000),
)
def test_many_intervals_priced_as_their_total(
    parts: list[tuple[int, int]], month_to_date: int
) -> None:
    for tariff in (FLAT, BLOCKS):
        start = T0
        used = month_to_date
        total: dict[str, Fraction] = {}
        for seconds, energy in parts:
            end = start + timedelta(seconds=seconds)
            for p, v in price_interval(tariff, start, end, energy, used).items():
                assert v >= 0
                total[p] = total.get(p, Fraction(0)) + v
            start, used = end, used + energy
        whole = price_interval(tariff, T0, start, sum(e for _, e in parts), month_to_date)
        assert total == whole


@given(st.integers(0, 10**7), st.integers(0, 86400 * 3), st.integers(0, 86400 * 40))
def test_tou_amount_is_between_cheapest_and_dearest(energy: int, seconds: int, offset: int) -> None:
    start = T0 + timedelta(seconds=offset)
    amount = price_interval(TOU, start, start + timedelta(seconds=seconds), energy)["gen"]
    assert Fraction(energy * 5, 1000) <= amount <= Fraction(energy * 30, 1000)


def test_bad_tariffs_are_refused() -> None:
    with pytest.raises(ValidationError, match="per_kwh or per_m3"):
        Tariff.model_validate(
            {"id": "x", "components": [{"provider": "a", "per_kwh": "1", "per_m3": "1"}]}
        )
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Tariff.model_validate({"id": "x", "components": [{"provider": "a", "per_kwh": "-1"}]})
    with pytest.raises(ValidationError, match="time zone"):
        Tariff.model_validate(
            {
                "id": "x",
                "timezone": "Mars/Olympus",
                "components": [{"provider": "a", "per_kwh": "1"}],
            }
        )
    with pytest.raises(ValidationError, match="blocks rise"):
        Tariff.model_validate(
            {
                "id": "x",
                "components": [
                    {
                        "provider": "a",
                        "blocks": [
                            {"up_to": "50", "price": "1"},
                            {"up_to": "10", "price": "1"},
                            {"price": "2"},
                        ],
                    }
                ],
            }
        )
    with pytest.raises(ValueError, match="negative"):
        price_interval(FLAT, T0, T0, -1)
