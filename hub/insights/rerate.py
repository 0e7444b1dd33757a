"""What a meter's records would cost on a tariff (pure, exact): the energy priced by
``protocol.rating.price_interval``, the one rating function of the hub and the agent, plus the
tariff's standing charges for the days covered.

Fast path, same figures: a tariff without inclining blocks whose window edges fall on quarter
hours prices a Wh by the local 15-minute slot of the week alone, and ``price_interval`` is
linear in energy then; so each slot's price is taken from ``price_interval`` once per tariff
and the records' energy is summed per slot. Records that are not whole quarter hours, and
tariffs with blocks, are priced record by record.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import numpy as np

from hub.insights.series import DAY_S, SLOT_S, SLOTS_PER_WEEK, Series, local_seconds, week_slot
from protocol.rating import price_interval, standing_charges
from protocol.tariff import Tariff

_MONDAY = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday; prices are taken in UTC wall time
_groups: dict[int, tuple[Tariff, list[tuple[Fraction, np.ndarray]] | None]] = {}
_GROUPS_MAX = 1024


def slot_groups(tariff: Tariff) -> list[tuple[Fraction, np.ndarray]] | None:
    """The price of one base unit in each slot of the week, as (price, slots at that price);
    None when the tariff cannot be priced by slot. Memoised by identity."""
    hit = _groups.get(id(tariff))
    if hit is not None and hit[0] is tariff:
        return hit[1]
    groups = _slot_groups(tariff)
    if len(_groups) >= _GROUPS_MAX:
        _groups.clear()
    _groups[id(tariff)] = (tariff, groups)
    return groups


def _slot_groups(tariff: Tariff) -> list[tuple[Fraction, np.ndarray]] | None:
    if any(c.blocks for c in tariff.components):
        return None
    edges = [t for c in tariff.components for w in c.tou for t in (w.start, w.end)]
    if any(t.minute % 15 or t.second or t.microsecond for t in edges):
        return None
    wall = tariff.model_copy(update={"timezone": "UTC"})
    step = timedelta(seconds=SLOT_S)
    prices: dict[Fraction, list[int]] = {}
    for slot in range(SLOTS_PER_WEEK):
        start = _MONDAY + slot * step
        price = sum(price_interval(wall, start, start + step, 1).values(), Fraction(0))
        prices.setdefault(price, []).append(slot)
    return [(p, np.asarray(s, dtype=np.int64)) for p, s in prices.items()]


def energy_cost(tariff: Tariff, series: Series) -> Fraction:
    """The energy of ``series`` priced on ``tariff`` (minor units, exact)."""
    if not len(series.wh):
        return Fraction(0)
    groups = slot_groups(tariff)
    whole = bool(np.all(series.end - series.start == SLOT_S) and np.all(series.start % SLOT_S == 0))
    if groups is None or not whole:
        return _by_record(tariff, series)
    slots = week_slot(local_seconds(series.start, tariff.timezone))
    per_slot = np.bincount(slots, weights=series.wh, minlength=SLOTS_PER_WEEK)
    if float(per_slot.sum()) >= 2**53:  # float sums stay exact below 2**53
        return _by_record(tariff, series)
    per_slot = per_slot.astype(np.int64)
    return sum((price * int(per_slot[s].sum()) for price, s in groups), Fraction(0))


def _by_record(tariff: Tariff, series: Series) -> Fraction:
    total = Fraction(0)
    month, used = "", 0
    local = local_seconds(series.start, tariff.timezone)
    for start, end, wh, loc in zip(
        series.start.tolist(), series.end.tolist(), series.wh.tolist(), local.tolist(), strict=True
    ):
        key = datetime.fromtimestamp(loc, UTC).strftime("%Y-%m")
        if key != month:
            month, used = key, 0
        a = datetime.fromtimestamp(start, UTC)
        b = datetime.fromtimestamp(end, UTC)
        total += sum(price_interval(tariff, a, b, wh, used).values(), Fraction(0))
        used += wh
    return total


def cost(tariff: Tariff, series: Series, days: int) -> Fraction:
    """Energy plus ``days`` days of standing charges (minor units, exact)."""
    standing = sum(standing_charges(tariff, days).values(), Fraction(0))
    return energy_cost(tariff, series) + standing


def days_covered(series: Series) -> int:
    """Whole days from the first record's start to the last one's end (at least one)."""
    if not len(series.start):
        return 0
    return max(1, -(-(int(series.end.max()) - int(series.start.min())) // DAY_S))
