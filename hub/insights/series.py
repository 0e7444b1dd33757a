"""A meter's usage as arrays, and local calendar fields computed from them (pure).

Times are UTC epoch seconds (int64); energy is base units (Wh, litres for water). Local time
comes from the zone's UTC offset looked up once per UTC hour (memoised, and as one table per
zone and span of hours): every zone in the tz database changes its offset on a whole UTC hour,
so an offset is constant within one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
DAY_S = 86_400
SLOT_S = 900  # a 15-minute slot
SLOTS_PER_DAY = DAY_S // SLOT_S
SLOTS_PER_WEEK = 7 * SLOTS_PER_DAY


def ints(values: object) -> Ints:
    return np.asarray(values, dtype=np.int64)


@dataclass(frozen=True)
class Series:
    """One meter's posted records, oldest first. ``segment`` numbers its register segments
    (one more after each accepted reset); ``import_start``/``import_end`` are its register."""

    meter: str
    service: str
    tariff: str | None
    timezone: str
    start: Ints
    end: Ints
    wh: Ints
    segment: Ints = field(default_factory=lambda: ints([]))
    import_start: Ints = field(default_factory=lambda: ints([]))
    import_end: Ints = field(default_factory=lambda: ints([]))

    def since(self, moment: int) -> Series:
        """The records that start at or after ``moment``."""
        keep = self.start >= moment
        return Series(
            self.meter,
            self.service,
            self.tariff,
            self.timezone,
            self.start[keep],
            self.end[keep],
            self.wh[keep],
            self.segment[keep] if len(self.segment) else self.segment,
            self.import_start[keep] if len(self.import_start) else self.import_start,
            self.import_end[keep] if len(self.import_end) else self.import_end,
        )


def local_seconds(moments: Ints, timezone: str) -> Ints:
    """``moments`` (UTC epoch seconds) as local wall-clock seconds since 1970-01-01 local."""
    if not len(moments):
        return moments
    hours = moments // 3600
    first, last = int(hours.min()), int(hours.max())
    return moments + _offset_table(timezone, first, last)[hours - first]


@functools.lru_cache(maxsize=256)
def _offset_table(timezone: str, first: int, last: int) -> Ints:
    """The zone's UTC offset (seconds) in each UTC hour from ``first`` to ``last``: every
    meter of a window shares one table."""
    zone = ZoneInfo(timezone)
    return np.fromiter(
        (_offset(zone, h) for h in range(first, last + 1)), np.int64, last - first + 1
    )


def _offset(zone: ZoneInfo, hour: int) -> int:
    delta = datetime.fromtimestamp(hour * 3600, UTC).astimezone(zone).utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def local_day(local: Ints) -> Ints:
    """Days since 1970-01-01 (local)."""
    return local // DAY_S


def weekday(day: Ints) -> Ints:
    """0 = Monday (1970-01-01 was a Thursday)."""
    return (day + 3) % 7


def week_slot(local: Ints) -> Ints:
    """The 15-minute slot of the week, 0 (Monday 00:00) to 671."""
    return weekday(local_day(local)) * SLOTS_PER_DAY + (local % DAY_S) // SLOT_S


def month_key(local_s: int) -> str:
    return datetime.fromtimestamp(local_s, UTC).strftime("%Y-%m")


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())
