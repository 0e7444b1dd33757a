"""Re-rating by slot gives the very figures of ``protocol.rating.price_interval`` record by
record, on a time-of-use tariff in a zone with a daylight-saving change, with taxes and
standing charges; a tariff with blocks is rated record by record."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from fractions import Fraction

from hub.insights.rerate import _by_record, cost, energy_cost, slot_groups
from hub.insights.series import SLOT_S, Series, ints
from protocol.rating import price_interval, standing_charges
from protocol.tariff import Tariff

TOU = Tariff.model_validate({
    "id": "tou", "currency": "USD", "timezone": "Europe/London",
    "components": [
        {"provider": "gen", "per_kwh": "0.1433",
         "tou": [{"start": "00:30", "end": "07:15", "price": "0.0521"},
                 {"days": [0, 1, 2, 3, 4], "start": "16:00", "end": "19:00", "price": "0.31"}]},
        {"provider": "grid", "per_kwh": "0.0517", "per_day": "0.30"},
        {"provider": "tax", "tax_rate": "0.16"},
    ],
})  # fmt: skip
BLOCKS = Tariff.model_validate({
    "id": "blk", "currency": "USD",
    "components": [{"provider": "gen", "blocks": [{"up_to": "50", "price": "0.1"},
                                                  {"price": "0.2"}]}],
})  # fmt: skip


def series(days: int, start: datetime) -> Series:
    rnd = random.Random(3)
    first = int(start.timestamp())
    starts = ints([first + i * SLOT_S for i in range(days * 96)])
    wh = ints([rnd.randint(0, 700) for _ in range(days * 96)])
    return Series("m", "electricity", "tou", "Europe/London", starts, starts + SLOT_S, wh)


def by_price_interval(tariff: Tariff, s: Series) -> Fraction:
    total, used, month = Fraction(0), 0, ""
    for a, b, wh in zip(s.start.tolist(), s.end.tolist(), s.wh.tolist(), strict=True):
        start = datetime.fromtimestamp(a, UTC)
        key = start.astimezone(tariff.zone).strftime("%Y-%m")
        used, month = (0, key) if key != month else (used, month)
        end = datetime.fromtimestamp(b, UTC)
        total += sum(price_interval(tariff, start, end, wh, used).values(), Fraction(0))
        used += wh
    return total


def test_slots_price_as_price_interval_across_a_clock_change() -> None:
    s = series(14, datetime(2026, 3, 22, tzinfo=UTC))  # London springs forward on 29 March
    assert slot_groups(TOU) is not None
    assert energy_cost(TOU, s) == by_price_interval(TOU, s) == _by_record(TOU, s)
    standing = sum(standing_charges(TOU, 14).values(), Fraction(0))
    assert cost(TOU, s, 14) == by_price_interval(TOU, s) + standing


def test_blocks_are_rated_record_by_record_across_months() -> None:
    s = series(10, datetime(2026, 4, 26, tzinfo=UTC))
    assert slot_groups(BLOCKS) is None
    assert energy_cost(BLOCKS, s) == by_price_interval(BLOCKS, s)
