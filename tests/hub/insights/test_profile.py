"""The usage profile against figures computed here: load shapes, window shares, month on month
and year on year, in a zone with its own offset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.insights.profile import DEFAULT_WINDOWS, profile
from hub.insights.series import Series, ints

ZONE = "Asia/Kolkata"  # UTC+05:30 all year
LOCAL = timedelta(hours=5, minutes=30)


def hourly_series(first: datetime, days: int, wh_at) -> Series:  # type: ignore[no-untyped-def]
    """Hour-long records from local midnight of ``first``; ``wh_at(local datetime)``."""
    start = first - LOCAL
    starts = [start + timedelta(hours=h) for h in range(days * 24)]
    wh = [wh_at(s + LOCAL) for s in starts]
    epoch = ints([int(s.timestamp()) for s in starts])
    return Series("m", "electricity", "t", ZONE, epoch, epoch + 3600, ints(wh))


def test_shapes_and_window_shares() -> None:
    s = hourly_series(datetime(2026, 6, 1, tzinfo=UTC), 14,  # two whole weeks from a Monday
                      lambda t: 100 + 10 * t.hour + (50 if t.weekday() == 6 else 0))  # fmt: skip
    p = profile(s, DEFAULT_WINDOWS, "2026-06")
    assert p.days == 14 and p.hourly == [100 + 10 * h + 50 // 7 for h in range(24)]
    per_day = sum(100 + 10 * h for h in range(24))
    assert p.weekly == [per_day] * 6 + [per_day + 24 * 50]
    total = 14 * per_day + 2 * 24 * 50
    off_peak = sum(14 * (100 + 10 * h) + 2 * 50 for h in (*range(22, 24), *range(7)))
    assert p.windows["off_peak"] == round(off_peak / total, 4)
    assert abs(sum(p.windows.values()) - 1) < 1e-3


def test_month_on_month_and_year_on_year() -> None:
    def wh(t: datetime) -> int:  # one Wh an hour, more in May 2026 and April 2026
        return {(2026, 5): 3, (2026, 4): 2}.get((t.year, t.month), 1)

    history = hourly_series(datetime(2025, 5, 1, tzinfo=UTC), 396, wh)  # to 1 June 2026
    recent = history.since(int(datetime(2026, 3, 1, tzinfo=UTC).timestamp()))
    p = profile(recent, DEFAULT_WINDOWS, "2026-05", history=history)
    may, april, may_before = 31 * 24 * 3, 30 * 24 * 2, 31 * 24
    assert p.months["2026-05"] == may and p.months["2025-05"] == may_before
    assert p.month_on_month == round((may - april) / april, 4)
    assert p.year_on_year == round((may - may_before) / may_before, 4)
    assert profile(recent, DEFAULT_WINDOWS, "2026-05").year_on_year is None
