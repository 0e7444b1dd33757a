"""A meter's usage profile (pure): daily and weekly load shape, share by time-of-use window,
month-on-month and year-on-year change.

A record counts at its start (records are 15 minutes long: a record crossing an hour or a
window edge is rare and small). Shapes are averages per day of data: Wh per local hour of the
day, Wh per day for each weekday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time
from typing import Any

import numpy as np

from hub.insights.series import DAY_S, Series, local_day, local_seconds, month_key, weekday
from protocol.tariff import Tariff


@dataclass(frozen=True)
class Window:
    """A named time-of-use window on weekdays ``days`` (0 = Monday), ``start`` to ``end``
    (``end`` at or before ``start`` wraps past midnight)."""

    name: str
    start: time
    end: time
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)


# Used when the customer's tariff has no windows of its own (README, "Windows").
DEFAULT_WINDOWS = (
    Window("day", time(7), time(17)),
    Window("peak", time(17), time(21)),
    Window("off_peak", time(22), time(7)),
)


def tariff_windows(tariff: Tariff | None) -> tuple[Window, ...]:
    """The tariff's own time-of-use windows, named by their price, else ``DEFAULT_WINDOWS``."""
    found: dict[tuple[time, time, tuple[int, ...]], Window] = {}
    for comp in tariff.components if tariff else ():
        for w in comp.tou:
            name = f"{w.start:%H:%M}-{w.end:%H:%M}"
            found.setdefault((w.start, w.end, w.days), Window(name, w.start, w.end, w.days))
    return tuple(found.values()) or DEFAULT_WINDOWS


def in_window(window: Window, local: np.ndarray) -> np.ndarray:
    day = local_day(local)
    minute = (local % DAY_S) // 60
    start = window.start.hour * 60 + window.start.minute
    end = window.end.hour * 60 + window.end.minute
    days = np.zeros(7, dtype=bool)
    days[list(window.days)] = True
    today = days[weekday(day)]
    if start < end:
        return today & (minute >= start) & (minute < end)
    yesterday = days[weekday(day - 1)]
    return (today & (minute >= start)) | (yesterday & (minute < end))


@dataclass(frozen=True)
class Profile:
    total: int
    days: int
    daily_average: int  # base units per day of data
    hourly: list[int]  # average per local hour, 24 values
    weekly: list[int]  # average per day for each weekday (Monday first), 7 values
    windows: dict[str, float]  # share of the total, 0..1, per window; "other" for the rest
    months: dict[str, int]  # YYYY-MM (local) -> total
    month_on_month: float | None  # relative change of ``month`` against the month before
    year_on_year: float | None  # against the same month a year before

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "days": self.days,
            "daily_average": self.daily_average,
            "hourly": self.hourly,
            "weekly": self.weekly,
            "windows": self.windows,
            "months": self.months,
            "month_on_month": self.month_on_month,
            "year_on_year": self.year_on_year,
        }


def profile(
    series: Series, windows: tuple[Window, ...], month: str, history: Series | None = None
) -> Profile:
    """``series`` over the analysis window; ``month`` (YYYY-MM) is the one compared, with the
    months totalled from ``history`` (default: ``series``)."""
    local = local_seconds(series.start, series.timezone)
    wh = series.wh
    total = int(wh.sum())
    day = local_day(local)
    days = np.unique(day)
    n_days = len(days)
    hour = (local % DAY_S) // 3600
    hourly = np.bincount(hour, weights=wh, minlength=24) if len(wh) else np.zeros(24)
    wd_energy = np.bincount(weekday(day), weights=wh, minlength=7) if len(wh) else np.zeros(7)
    wd_days = np.bincount(weekday(days), minlength=7) if n_days else np.zeros(7)
    shares: dict[str, float] = {}
    counted = np.zeros(len(wh), dtype=bool)
    for window in windows:
        mask = in_window(window, local) & ~counted
        counted |= mask
        shares[window.name] = _share(int(wh[mask].sum()), total)
    shares["other"] = _share(int(wh[~counted].sum()), total)
    if history is None:
        months = _months(local, wh)
    else:
        months = _months(local_seconds(history.start, history.timezone), history.wh)
    return Profile(
        total=total,
        days=n_days,
        daily_average=total // n_days if n_days else 0,
        hourly=[round(v / n_days) if n_days else 0 for v in hourly.tolist()],
        weekly=[
            round(e / d) if d else 0
            for e, d in zip(wd_energy.tolist(), wd_days.tolist(), strict=True)
        ],
        windows=shares,
        months=months,
        month_on_month=_change(months, month, _shift(month, -1)),
        year_on_year=_change(months, month, _shift(month, -12)),
    )


def _months(local: np.ndarray, wh: np.ndarray) -> dict[str, int]:
    if not len(wh):
        return {}
    day = local_day(local)
    first = int(day.min())
    per_day = np.bincount(day - first, weights=wh)
    months: dict[str, int] = {}
    for offset in np.nonzero(per_day)[0].tolist():
        key = month_key((first + offset) * DAY_S)
        months[key] = months.get(key, 0) + int(per_day[offset])
    return months


def _share(part: int, total: int) -> float:
    return round(part / total, 4) if total else 0.0


def _change(months: dict[str, int], now: str, before: str) -> float | None:
    if now not in months or not months.get(before):
        return None
    return round((months[now] - months[before]) / months[before], 4)


def _shift(month: str, by: int) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    index = year * 12 + mon - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"
