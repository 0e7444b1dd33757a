"""Payment behaviour (pure): days of credit left at the current rate, top-up cadence, share of
time disconnected, late bills, and a risk score made of named reasons (README, "Risk")."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.insights.anomalies import Span
from hub.insights.series import DAY_S


@dataclass(frozen=True)
class PaymentFacts:
    balance: int  # minor units, now
    spend: Sequence[tuple[int, int]]  # (epoch s, minor units debited) over the rate window
    topups: Sequence[tuple[int, int]]  # (epoch s, minor units) over the window
    off: Sequence[Span]  # when the supply was off (epoch s)
    late_bills: int  # open postpaid bills past their due date
    window: tuple[int, int]  # (from, to) epoch s
    rate_days: int = 30


@dataclass(frozen=True)
class Behaviour:
    days_left: float | None
    spend_per_day: int
    topups: int
    topup_every_days: float | None
    topup_median: int | None
    disconnected_share: float
    late_bills: int
    risk: int
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "days_left": self.days_left,
            "spend_per_day": self.spend_per_day,
            "topups": self.topups,
            "topup_every_days": self.topup_every_days,
            "topup_median": self.topup_median,
            "disconnected_share": self.disconnected_share,
            "late_bills": self.late_bills,
            "risk": {"score": self.risk, "reasons": self.reasons},
        }


# points per risk rule (README, "Risk"); the score is their sum, at most 100
RISK_RULES = {
    "credit_3_days": 30,
    "credit_7_days": 15,
    "disconnected_10pc": 25,
    "late_bill": 15,
    "no_topup_30_days": 15,
}


def behaviour(facts: PaymentFacts) -> Behaviour:
    start, end = facts.window
    rate_from = end - facts.rate_days * DAY_S
    spent = sum(a for t, a in facts.spend if t >= rate_from)
    per_day = spent // facts.rate_days
    days_left = round(facts.balance / per_day, 1) if per_day > 0 else None
    times = sorted(t for t, _ in facts.topups)
    gaps = [(b - a) / DAY_S for a, b in itertools.pairwise(times)]
    every = round(statistics.median(gaps), 1) if gaps else None
    median = int(statistics.median(a for _, a in facts.topups)) if facts.topups else None
    off = sum(
        min(s.end, end) - max(s.start, start) for s in facts.off if s.end > start and s.start < end
    )
    share = round(off / (end - start), 4) if end > start else 0.0
    score, reasons = 0, []
    if days_left is not None and days_left < 3:
        score += RISK_RULES["credit_3_days"]
        reasons.append(f"credit lasts {days_left} days at {per_day} a day")
    elif days_left is not None and days_left < 7:
        score += RISK_RULES["credit_7_days"]
        reasons.append(f"credit lasts {days_left} days at {per_day} a day")
    if share >= 0.1:
        score += RISK_RULES["disconnected_10pc"]
        reasons.append(f"disconnected {share:.0%} of the time")
    if facts.late_bills:
        score += RISK_RULES["late_bill"] * min(facts.late_bills, 3)
        reasons.append(f"{facts.late_bills} bills past their due date")
    if per_day > 0 and (not times or times[-1] < end - 30 * DAY_S):
        score += RISK_RULES["no_topup_30_days"]
        reasons.append("no top-up in 30 days")
    return Behaviour(
        days_left,
        per_day,
        len(times),
        every,
        median,
        share,
        facts.late_bills,
        min(score, 100),
        reasons,
    )
