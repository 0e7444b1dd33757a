"""Billing periods: calendar months in the hub's time zone (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True, order=True)
class Period:
    """One calendar month; ``str(p)`` is ``YYYY-MM``."""

    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Period:
        """``YYYY-MM``; ValueError for anything else."""
        found = _PERIOD.match(text)
        if found is None or int(found.group(1)) < 1970:
            raise ValueError(f"period must be YYYY-MM, not {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, instant: datetime, zone: ZoneInfo) -> Period:
        """The period ``instant`` falls in, in ``zone``."""
        local = instant.astimezone(zone)
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def next(self) -> Period:
        return Period(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Period:
        return Period(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def start(self, zone: tzinfo) -> datetime:
        """The first instant of the month in ``zone``, as UTC."""
        return datetime(self.year, self.month, 1, tzinfo=zone).astimezone(UTC)

    def end(self, zone: tzinfo) -> datetime:
        """The first instant after the month (exclusive bound), as UTC."""
        return self.next().start(zone)

    def days(self) -> int:
        return (self.next().start(UTC) - self.start(UTC)).days
