"""Rate one usage record for a meter: exact amounts, whole-unit shares, the next meter state.

Pure. ``rate`` is what the ingest worker calls for every record, in seq order per meter; the
carry and month-to-date energy come from ``MeterState`` so that the outcome depends only on the
records and their seq order, never on arrival order or batch boundaries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from math import lcm
from typing import cast

from hub.rating.mix import apply_mix
from hub.rating.state import MeterState
from protocol.apportion import apportion, apportion_linear
from protocol.messages import UsageRecord
from protocol.rating import price_interval
from protocol.tariff import Tariff


@dataclass(frozen=True)
class Rated:
    """The hub's figures for one record: ``debit`` = sum of ``shares`` (provider → minor units).

    ``amounts`` (exact, per provider) is built on first use: the linear fast path never needs
    it to rate."""

    shares: dict[str, int]
    debit: int
    state: MeterState
    exact: Callable[[], dict[str, Fraction]]

    @property
    def amounts(self) -> dict[str, Fraction]:
        return self.exact()


_months: dict[tuple[str, timedelta], str] = {}
_rates: dict[int, tuple[Tariff, tuple[int, dict[str, int]] | None]] = {}
_CACHE_MAX = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def month_key(tariff: Tariff, moment: datetime) -> str:
    """ "YYYY-MM" of ``moment`` in the tariff's zone. Memoised per (zone, instant): every meter
    reports the same interval bounds, and the conversion costs more than the rest of rating
    a record. The instant is looked up as its distance from the epoch, exact to the
    microsecond and fold aware (comparing aware datetimes of different tzinfo objects, as
    parsed records have, costs more); a naive ``moment`` is converted on its own."""
    if moment.tzinfo is None:
        return moment.astimezone(tariff.zone).strftime("%Y-%m")
    key = (tariff.timezone, moment - _EPOCH)
    month = _months.get(key)
    if month is None:
        month = moment.astimezone(tariff.zone).strftime("%Y-%m")
        if len(_months) >= _CACHE_MAX:
            _months.clear()
        _months[key] = month
    return month


def _month_start(tariff: Tariff, moment: datetime) -> datetime:
    local = moment.astimezone(tariff.zone)
    return local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _int_rates(tariff: Tariff) -> tuple[int, dict[str, int]] | None:
    """``_int_rates_of(tariff)`` looked up by identity: hashing a Tariff (as ``lru_cache``
    does) walks all its fields, per record. The entry holds the tariff, so its id cannot be
    reused while cached."""
    hit = _rates.get(id(tariff))
    if hit is not None and hit[0] is tariff:
        return hit[1]
    rates = _int_rates_of(tariff)
    if len(_rates) >= _CACHE_MAX:
        _rates.clear()
    _rates[id(tariff)] = (tariff, rates)
    return rates


@lru_cache(maxsize=256)
def _int_rates_of(tariff: Tariff) -> tuple[int, dict[str, int]] | None:
    """The unit rates of a linear tariff as integers over one denominator."""
    rates = _unit_rates(tariff)
    if rates is None:
        return None
    d = lcm(*(r.denominator for r in rates.values())) if rates else 1
    return d, {p: r.numerator * (d // r.denominator) for p, r in rates.items()}


@lru_cache(maxsize=256)
def _unit_rates(tariff: Tariff) -> dict[str, Fraction] | None:
    """Per-base-unit price of each provider when the tariff is linear in energy (no blocks and
    no time-of-use windows), else None. Linear tariffs are rated by one multiplication."""
    if any(c.tou or c.blocks for c in tariff.components):
        return None
    moment = datetime(2000, 1, 1, tzinfo=tariff.zone)
    return price_interval(tariff, moment, moment, 1)


def price(
    tariff: Tariff, start: datetime, end: datetime, energy: int, month_to_date: Fraction
) -> dict[str, Fraction]:
    """``protocol.rating.price_interval``, with a fast path for linear tariffs."""
    rates = _unit_rates(tariff)
    if rates is not None:
        return {p: r * energy for p, r in rates.items()}
    # price_interval works in Fractions throughout; month-to-date may be fractional when an
    # earlier interval straddled a month boundary.
    return price_interval(tariff, start, end, energy, cast(int, month_to_date))


def energy_in_end_month(tariff: Tariff, start: datetime, end: datetime, energy: int) -> Fraction:
    """The part of ``energy`` (spread evenly over the interval) used in the month of ``end``."""
    boundary = _month_start(tariff, end)
    if boundary <= start or end <= start:
        return Fraction(energy)
    return Fraction(energy) * Fraction(_micros(end - boundary), _micros(end - start))


def rate(
    tariff: Tariff,
    state: MeterState,
    record: UsageRecord,
    *,
    mix: Mapping[str, Mapping[str, Fraction]] | None = None,
    month_to_date: Fraction | None = None,
    in_order: bool = True,
) -> Rated:
    """Rate ``record`` on top of ``state``; the new state follows the record.

    ``mix`` maps a pooled provider to the measured proportions of its generators (see
    ``hub.rating.mix``). ``month_to_date`` overrides the state's figure (records rated out of
    order, whose month-to-date the caller takes from posted energy).
    """
    start, end, energy = record.start, record.end, record.energy
    start_month = month_key(tariff, start)
    if month_to_date is None:
        month_to_date = state.mtd if state.month == start_month else Fraction(0)
    linear = None if mix else _int_rates(tariff)
    carry: Mapping[str, Fraction]
    if linear is not None:
        d, rates = linear
        shares, carry = apportion_linear(rates, d, energy, state.carry)

        def exact() -> dict[str, Fraction]:
            return {p: Fraction(r * energy, d) for p, r in rates.items()}
    else:
        amounts = price(tariff, start, end, energy, month_to_date)
        if mix:
            amounts = apply_mix(amounts, mix)
        shares, carry = apportion(amounts, state.carry)

        def exact() -> dict[str, Fraction]:
            return amounts

    end_month = month_key(tariff, end)
    if not in_order:
        late = energy_in_end_month(tariff, start, end, energy)
        mtd = state.mtd + late if state.month == end_month else state.mtd
        new = replace(state, carry=carry, mtd=mtd)
    else:
        if end_month == start_month:
            mtd = _plus(month_to_date, energy)
        else:
            mtd = energy_in_end_month(tariff, start, end, energy)
        new = MeterState(seq=record.seq, carry=carry, month=end_month, mtd=mtd,
                         register=record.import_end, segment=state.segment,
                         until=record.end, fees=state.fees)  # fmt: skip
    return Rated(shares=shares, debit=sum(shares.values()), state=new, exact=exact)


def _plus(energy: Fraction, more: int) -> Fraction:
    """``energy + more``; a whole ``energy`` (the usual month-to-date) skips Fraction's
    general addition and its gcd."""
    if energy.denominator == 1:
        return Fraction(energy.numerator + more)
    return energy + more


def _micros(d: timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
