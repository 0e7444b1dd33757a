"""Anomalies, each with its evidence (pure). Kinds and severities:

- ``change_point`` (medium for a drop, low for a rise): the meter's daily use changed suddenly
  and stayed changed: the best single change point of the daily totals under the l2 cost
  (the split that leaves the least squared deviation from the two segments' means, segments of
  at least ``min_days``), kept only when the two means differ by at least ``min_change`` of
  the earlier one and by more than ``sigmas`` times the day-to-day spread within the segments.
  The split is what ``ruptures.Binseg(model="l2", min_size=min_days, jump=1)`` finds for one
  breakpoint, computed here in one pass of cumulative sums (a test holds the two equal):
  ruptures evaluates every candidate's cost anew and takes 20 ms a meter.
- ``energy_while_off`` (high): records wholly inside a time the supply was meant to be off
  (the relay read off, or a disconnect was in force) carry energy; ``relay_forced_on`` in the
  evidence when the relay read on after the disconnect (forced on), else a bypass of the relay.
- ``bypass_suspected`` (high): current at or above ``min_current_a`` for ``min_bypass_s`` while
  the energy register does not advance (from readings with a current).
- ``register_reset`` (medium): the register started a new segment or went down.
- ``import_mismatch`` (medium): imported readings disagree with what the gateway reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from hub.insights.series import DAY_S, Series, local_day, local_seconds


@dataclass(frozen=True)
class AnomalySettings:
    min_days: int = 7
    min_change: float = 0.4
    sigmas: float = 4.0
    min_current_a: float = 0.5
    min_bypass_s: int = 3600


@dataclass(frozen=True)
class Anomaly:
    kind: str
    meter: str
    severity: str  # low | medium | high
    at: int  # epoch seconds: when it started
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Names the anomaly, so that it is raised once."""
        return f"{self.kind}:{self.meter}:{self.at}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "meter": self.meter,
            "severity": self.severity,
            "at": iso(self.at),
            "reason": self.reason,
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class Span:
    """When the supply was meant to be off (epoch s); ``forced``: the relay read on meanwhile."""

    start: int
    end: int
    forced: bool = False


@dataclass(frozen=True)
class Samples:
    """Readings of one meter with a current: epoch seconds, amperes, register (base units)."""

    at: np.ndarray
    current_a: np.ndarray
    register: np.ndarray


def iso(moment: int) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat()


def daily_totals(series: Series, until_day: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(local days, total per day) for every day from the first record's to the last's (days
    without records count 0); ``until_day`` excludes that day and later (an incomplete day)."""
    if not len(series.wh):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    day = local_day(local_seconds(series.start, series.timezone))
    first, last = int(day.min()), int(day.max())
    if until_day is not None:
        last = min(last, until_day - 1)
    if last < first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    keep = day <= last
    totals = np.bincount(day[keep] - first, weights=series.wh[keep], minlength=last - first + 1)
    totals = totals.astype(np.int64)
    return np.arange(first, last + 1, dtype=np.int64), totals


def change_point(
    series: Series, settings: AnomalySettings, until_day: int | None = None
) -> Anomaly | None:
    days, totals = daily_totals(series, until_day)
    n = len(totals)
    if n < 2 * settings.min_days:
        return None
    cut = best_split(totals.astype(float), settings.min_days)
    if cut is None:
        return None
    before, after = totals[:cut], totals[cut:]
    mean_b, mean_a = float(before.mean()), float(after.mean())
    spread = float(np.sqrt((before.var() * len(before) + after.var() * len(after)) / n))
    shift = abs(mean_a - mean_b)
    if mean_b <= 0 and mean_a <= 0:
        return None
    relative = shift / mean_b if mean_b > 0 else float("inf")
    if relative < settings.min_change or shift <= settings.sigmas * spread:
        return None
    drop = mean_a < mean_b
    return Anomaly(
        kind="change_point",
        meter=series.meter,
        severity="medium" if drop else "low",
        at=int(days[cut]) * DAY_S,
        reason=f"daily use {'dropped' if drop else 'rose'} from {mean_b:.0f} to {mean_a:.0f} "
        f"per day from {iso(int(days[cut]) * DAY_S)[:10]} on",
        evidence={
            "before_per_day": round(mean_b),
            "after_per_day": round(mean_a),
            "days_before": len(before),
            "days_after": len(after),
            "change": round((mean_a - mean_b) / mean_b, 4) if mean_b > 0 else None,
            "spread_per_day": round(spread),
        },
    )


def best_split(signal: np.ndarray, min_size: int) -> int | None:
    """The index splitting ``signal`` into two segments (each at least ``min_size`` long) with
    the least total squared deviation from their means; the first of equals."""
    n = len(signal)
    if n < 2 * min_size:
        return None
    sums = np.concatenate(([0.0], np.cumsum(signal)))
    squares = np.concatenate(([0.0], np.cumsum(signal * signal)))
    cuts = np.arange(min_size, n - min_size + 1)
    left = squares[cuts] - sums[cuts] ** 2 / cuts
    right = (squares[n] - squares[cuts]) - (sums[n] - sums[cuts]) ** 2 / (n - cuts)
    return int(cuts[int(np.argmin(left + right))])


def energy_while_off(series: Series, off: Sequence[Span]) -> Anomaly | None:
    """Records wholly inside a span when the supply was meant to be off, with energy."""
    if not off or not len(series.wh):
        return None
    inside = np.zeros(len(series.wh), dtype=bool)
    forced = False
    for span in off:
        within = (series.start >= span.start) & (series.end <= span.end)
        if (within & (series.wh > 0)).any():
            forced = forced or span.forced
        inside |= within
    hit = inside & (series.wh > 0)
    if not hit.any():
        return None
    first = int(series.start[hit].min())
    energy = int(series.wh[hit].sum())
    how = "the relay read on after a disconnect" if forced else "the relay read off"
    return Anomaly(
        kind="energy_while_off",
        meter=series.meter,
        severity="high",
        at=first,
        reason=f"{energy} recorded in {int(hit.sum())} records while the supply was off ({how})",
        evidence={
            "energy": energy,
            "records": int(hit.sum()),
            "first": iso(first),
            "last": iso(int(series.end[hit].max())),
            "relay_forced_on": forced,
        },
    )


def bypass(meter: str, samples: Samples, settings: AnomalySettings) -> Anomaly | None:
    """The longest run of readings with current flowing and the register standing still (the
    first of equals): a run is the readings from one before the first that did not advance,
    with current at both, to the last such reading in a row."""
    n = len(samples.at)
    if n < 2:
        return None
    flowing = samples.current_a >= settings.min_current_a
    ok = np.zeros(n, dtype=np.int8)
    ok[1:] = (np.diff(samples.register) == 0) & flowing[1:] & flowing[:-1]
    edges = np.diff(np.concatenate(([0], ok, [0])))
    firsts, lasts = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0] - 1
    if not len(firsts):
        return None
    spans = samples.at[lasts] - samples.at[firsts - 1]
    k = int(np.argmax(spans))
    a, last = int(firsts[k]) - 1, int(lasts[k])
    # the run's first reading at its last instant (readings may share one)
    b = a + int(np.searchsorted(samples.at[a : last + 1], samples.at[last]))
    b = max(b, a + 1)
    duration = int(samples.at[b] - samples.at[a])
    if duration < settings.min_bypass_s:
        return None
    current = float(samples.current_a[a : b + 1].mean())
    return Anomaly(
        kind="bypass_suspected",
        meter=meter,
        severity="high",
        at=int(samples.at[a]),
        reason=f"{current:.2f} A flowed for {duration // 60} min while the register stood at "
        f"{int(samples.register[a])}",
        evidence={
            "from": iso(int(samples.at[a])),
            "to": iso(int(samples.at[b])),
            "mean_current_a": round(current, 3),
            "register": int(samples.register[a]),
        },
    )


def register_resets(series: Series) -> list[Anomaly]:
    n = len(series.import_start)
    if n < 2:
        return []
    went_down = series.import_start[1:] < series.import_end[:-1]
    if len(series.segment) == n:
        went_down |= series.segment[1:] != series.segment[:-1]
    out = []
    for i in np.nonzero(went_down)[0].tolist():
        old, new = int(series.import_end[i]), int(series.import_start[i + 1])
        out.append(
            Anomaly(
                kind="register_reset",
                meter=series.meter,
                severity="medium",
                at=int(series.start[i + 1]),
                reason=f"the register went from {old} to {new}",
                evidence={"old": old, "new": new, "at": iso(int(series.start[i + 1]))},
            )
        )
    return out


@dataclass(frozen=True)
class Mismatch:
    """An imported reading that disagreed with the gateway's record (``reading_mismatches``)."""

    at: int
    reading: int
    import_start: int
    import_end: int
    source: str


def import_mismatch(meter: str, rows: Sequence[Mismatch]) -> Anomaly | None:
    if not rows:
        return None

    def off_by(m: Mismatch) -> int:
        if m.reading < m.import_start:
            return m.import_start - m.reading
        return max(m.reading - m.import_end, 0)

    worst = max(rows, key=off_by)
    first = min(m.at for m in rows)
    return Anomaly(
        kind="import_mismatch",
        meter=meter,
        severity="medium",
        at=first,
        reason=f"{len(rows)} imported readings disagree with the gateway, the worst by "
        f"{off_by(worst)} ({worst.source or 'import'} at {iso(worst.at)})",
        evidence={
            "readings": len(rows),
            "worst_at": iso(worst.at),
            "worst_reading": worst.reading,
            "gateway_from": worst.import_start,
            "gateway_to": worst.import_end,
            "source": worst.source,
        },
    )
