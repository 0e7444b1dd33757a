"""Shares by measured service (claim 15): a generation mix.

Several generators supply a meter in proportions that vary by time. A mix table gives, for a
pooled provider named in the tariff (say ``gen-pool``), windows of time and the energy each
generator was measured to deliver in the window. A record's amount for the pooled provider is
split among the generators by those proportions, weighted by how much of the record's interval
falls in each window. Exact Fractions throughout; the carry then rounds per generator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction


@dataclass(frozen=True)
class MixWindow:
    """Measured delivery by generator (any non-negative integer scale, e.g. Wh) in
    ``[start, end)``; ``end`` None = until further notice."""

    pool: str
    start: datetime
    end: datetime | None
    measured: Mapping[str, int]

    def __post_init__(self) -> None:
        if any(v < 0 for v in self.measured.values()):
            raise ValueError("measured delivery cannot be negative")
        if sum(self.measured.values()) <= 0:
            raise ValueError("a mix window needs at least one generator that delivered")
        if self.end is not None and self.end <= self.start:
            raise ValueError("a mix window ends after it starts")


def proportions(
    windows: Iterable[MixWindow], start: datetime, end: datetime
) -> dict[str, dict[str, Fraction]]:
    """For each pool, each generator's proportion over ``[start, end)`` (sums to 1 per pool).

    Time not covered by any window of a pool is left out of the weighting; a pool with no
    window overlapping the interval is not in the answer (its provider keeps the amount). A zero
    length interval takes the window in force at ``start``.
    """
    weights: dict[str, dict[str, Fraction]] = {}
    for w in windows:
        w_end = w.end or datetime.max.replace(tzinfo=start.tzinfo)
        if end > start:
            lo, hi = max(start, w.start), min(end, w_end)
            if hi <= lo:
                continue
            span = Fraction(_micros(hi - lo))
        elif w.start <= start < w_end:
            span = Fraction(1)
        else:
            continue
        total = sum(w.measured.values())
        bucket = weights.setdefault(w.pool, {})
        for gen, amount in w.measured.items():
            if amount:
                bucket[gen] = bucket.get(gen, Fraction(0)) + span * Fraction(amount, total)
    out: dict[str, dict[str, Fraction]] = {}
    for pool, gens in weights.items():
        whole = sum(gens.values(), Fraction(0))
        if whole > 0:
            out[pool] = {g: v / whole for g, v in gens.items()}
    return out


def apply_mix(
    amounts: Mapping[str, Fraction], mix: Mapping[str, Mapping[str, Fraction]]
) -> dict[str, Fraction]:
    """``amounts`` with each pooled provider's amount moved to its generators by proportion."""
    out: dict[str, Fraction] = {}
    for provider, amount in amounts.items():
        props = mix.get(provider)
        if not props:
            out[provider] = out.get(provider, Fraction(0)) + amount
            continue
        for gen, share in props.items():
            out[gen] = out.get(gen, Fraction(0)) + amount * share
    return out


def _micros(d: timedelta) -> int:
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
