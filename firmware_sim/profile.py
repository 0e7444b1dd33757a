"""Daily load profiles (pure): a step function of the time of day, as per-mille factors.

A profile multiplies each meter's base load. It is written ``HH[:MM]=FACTOR,...``, e.g.
``00=0.3,07=1,09:30=0.5,18=1.5,22=0.6``; before the first step the last one applies (it wraps
around midnight). Energy over any interval is computed exactly from a cumulative integral.
"""

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from firmware_sim.errors import ConfigError

DAY_NS = 86_400 * 1_000_000_000
PERMILLE = 1000

PRESETS = {
    # A household: low at night, breakfast and evening peaks.
    "household": "00=0.3,06:30=1.2,09=0.5,17=1.6,22=0.7",
    # A small shop: open 08-19.
    "shop": "00=0.15,08=1,19=0.15",
}


@dataclass(frozen=True)
class DailyProfile:
    """Steps ``(start ns since midnight, factor in per mille)``, sorted, covering the day."""

    segments: tuple[tuple[int, int, int], ...]  # (start_ns, end_ns, permille)
    day_total: int  # permille * ns over one whole day

    def factor_at(self, epoch_ns: int) -> int:
        """The factor (per mille) in force at ``epoch_ns``."""
        tod = epoch_ns % DAY_NS
        for start, end, permille in self.segments:
            if start <= tod < end:
                return permille
        return self.segments[-1][2]

    def integral(self, epoch_ns: int) -> int:
        """Per-mille nanoseconds from the epoch to ``epoch_ns`` (exact)."""
        days, tod = divmod(epoch_ns, DAY_NS)
        total = days * self.day_total
        for start, end, permille in self.segments:
            if tod <= start:
                break
            total += (min(tod, end) - start) * permille
        return total


def parse_profile(text: str) -> DailyProfile:
    """A profile from its text form or a preset name (``household``, ``shop``)."""
    spec = PRESETS.get(text.strip(), text)
    steps: dict[int, int] = {}
    for item in spec.split(","):
        when, sep, factor = item.strip().partition("=")
        if not sep:
            raise ConfigError("--profile", f"expected HH[:MM]=FACTOR, got {item.strip()!r}")
        steps[_time_of_day(when)] = _permille(factor)
    starts = sorted(steps)
    segments: list[tuple[int, int, int]] = []
    if starts[0] != 0:
        segments.append((0, starts[0], steps[starts[-1]]))
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else DAY_NS
        segments.append((start, end, steps[start]))
    total = sum((end - start) * permille for start, end, permille in segments)
    return DailyProfile(tuple(segments), total)


def _time_of_day(text: str) -> int:
    hours, _, minutes = text.strip().partition(":")
    try:
        h, m = int(hours), int(minutes or 0)
    except ValueError as exc:
        raise ConfigError("--profile", f"bad time of day {text.strip()!r}") from exc
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ConfigError("--profile", f"bad time of day {text.strip()!r}")
    return (h * 3600 + m * 60) * 1_000_000_000


def _permille(text: str) -> int:
    try:
        value = Decimal(text.strip()) * PERMILLE
    except InvalidOperation as exc:
        raise ConfigError("--profile", f"bad factor {text.strip()!r}") from exc
    if value < 0 or value != value.to_integral_value() or value > 100 * PERMILLE:
        raise ConfigError("--profile", f"factor {text.strip()!r}: 0 to 100, at most 3 decimals")
    return int(value)
