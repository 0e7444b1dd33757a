"""Price usage with a tariff: exact amounts per provider, as Fractions of a minor unit.

Pure functions, no I/O. Energy within an interval is taken as spread evenly over its time, so an
interval that crosses a time-of-use or month boundary is priced piece by piece. Inclining blocks
count energy from the start of the calendar month in the tariff's time zone.
"""

import itertools
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from fractions import Fraction

from protocol.tariff import Component, Tariff

BASE_UNITS_PER_UNIT = 1000  # Wh per kWh, litres per m3


def price_interval(
    tariff: Tariff, start: datetime, end: datetime, energy: int, month_to_date: int = 0
) -> dict[str, Fraction]:
    """What each provider earns for ``energy`` base units used from ``start`` to ``end``.

    ``month_to_date`` is the energy already used this calendar month before ``start``.
    """
    if energy < 0:
        raise ValueError("energy cannot be negative")
    if end < start:
        raise ValueError("an interval cannot end before it starts")
    amounts: dict[str, Fraction] = {p: Fraction(0) for p in _charging(tariff)}
    if energy == 0:
        return amounts
    scale = Fraction(10**tariff.exponent, BASE_UNITS_PER_UNIT)
    month = _local(tariff, start).replace(day=1).date()
    used = Fraction(month_to_date)
    for piece_start, piece_energy in _pieces(tariff, start, end, energy):
        local = _local(tariff, piece_start)
        if local.replace(day=1).date() != month:
            month, used = local.replace(day=1).date(), Fraction(0)
        untaxed = Fraction(0)
        for comp in tariff.components:
            if not comp.energy_priced:
                continue
            cost = _energy_cost(comp, local, used, piece_energy) * scale
            amounts[comp.provider] += cost
            untaxed += cost
        for comp in tariff.components:
            if comp.tax_rate is not None:
                amounts[comp.provider] += untaxed * Fraction(comp.tax_rate)
        used += piece_energy
    return amounts


def standing_charges(tariff: Tariff, days: int = 1) -> dict[str, Fraction]:
    """Each provider's standing charge (``per_day``) for ``days`` days, with taxes on it."""
    amounts: dict[str, Fraction] = {}
    scale = 10**tariff.exponent
    untaxed = Fraction(0)
    for comp in tariff.components:
        if comp.per_day is not None:
            cost = Fraction(comp.per_day) * days * scale
            amounts[comp.provider] = amounts.get(comp.provider, Fraction(0)) + cost
            untaxed += cost
    for comp in tariff.components:
        if comp.tax_rate is not None and untaxed:
            tax = untaxed * Fraction(comp.tax_rate)
            amounts[comp.provider] = amounts.get(comp.provider, Fraction(0)) + tax
    return amounts


def _charging(tariff: Tariff) -> list[str]:
    return [c.provider for c in tariff.components if c.energy_priced or c.tax_rate is not None]


def _energy_cost(comp: Component, local: datetime, used: Fraction, energy: Fraction) -> Fraction:
    if comp.blocks:
        return _block_cost(comp, used, energy)
    return energy * Fraction(_tou_price(comp, local))


def _block_cost(comp: Component, used: Fraction, energy: Fraction) -> Fraction:
    cost = Fraction(0)
    lower = Fraction(0)
    for block in comp.blocks:
        upper = None if block.up_to is None else Fraction(block.up_to) * BASE_UNITS_PER_UNIT
        lo = max(lower, used)
        hi = used + energy if upper is None else min(upper, used + energy)
        if hi > lo:
            cost += (hi - lo) * Fraction(block.price)
        if upper is None:
            break
        lower = upper
    else:
        beyond = used + energy - max(lower, used)
        if beyond > 0:
            cost += beyond * Fraction(comp.blocks[-1].price)
    return cost


def _tou_price(comp: Component, local: datetime) -> Decimal:
    clock = local.time()
    today = local.weekday()
    yesterday = (today - 1) % 7
    for window in comp.tou:
        if window.start < window.end:
            if today in window.days and window.start <= clock < window.end:
                return window.price
        elif (today in window.days and clock >= window.start) or (
            yesterday in window.days and clock < window.end
        ):
            return window.price
    return comp.flat


def _local(tariff: Tariff, moment: datetime) -> datetime:
    return moment.astimezone(tariff.zone)


def _pieces(
    tariff: Tariff, start: datetime, end: datetime, energy: int
) -> Iterator[tuple[datetime, Fraction]]:
    """The interval cut at local midnights and window edges, each with its share of energy."""
    span = _micros(end - start)
    if span == 0:
        yield start, Fraction(energy)
        return
    cuts = sorted({start, end, *_boundaries(tariff, start, end)})
    for a, b in itertools.pairwise(cuts):
        yield a, Fraction(energy * _micros(b - a), span)


def _boundaries(tariff: Tariff, start: datetime, end: datetime) -> Iterator[datetime]:
    edges = {time(0)} | {t for c in tariff.components for w in c.tou for t in (w.start, w.end)}
    day: date = _local(tariff, start).date()
    last: date = _local(tariff, end).date()
    while day <= last:
        for edge in edges:
            moment = datetime.combine(day, edge, tariff.zone)
            if start < moment < end:
                yield moment
        day += timedelta(days=1)


def _micros(delta: timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
