"""Offers (pure): a tariff marked ``"offer": true`` that would have cost less, an emergency
credit plan for customers often cut off at night, additional services from the rule table.
Never for protected customers (their offers wait for an operator's review) nor for customers
who opted out; each offer carries its reason."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from fractions import Fraction
from typing import Any

from hub.insights.rules import RULES, Rule, matching


@dataclass(frozen=True)
class OfferSettings:
    min_saving: int = 100  # minor units over the window
    window_days: int = 90
    night_start: time = time(20)
    night_end: time = time(7)
    night_cutoffs: int = 2  # disconnections at night in the window


@dataclass(frozen=True)
class Offer:
    kind: str  # tariff | emergency_credit | service:<product>
    reason: str
    tariff: str | None = None
    saving: int | None = None  # minor units

    def as_dict(self, money: Any = None) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "reason": self.reason}
        if self.tariff is not None:
            out["tariff"] = self.tariff
        if self.saving is not None:
            out["saving"] = money(self.saving) if money else self.saving
        return out


def withheld(protected: bool, opted_out: bool) -> str | None:
    """Why a customer gets no automatic offer, or None."""
    if protected:
        return "protected customer: offers only after an operator's review"
    if opted_out:
        return "the customer opted out of offers"
    return None


def saving(current: Fraction, offered: Fraction) -> int:
    """Whole minor units saved (rounded down: an offer never states more than it saves)."""
    return math.floor(current - offered)


def tariff_offer(
    current_tariff: str,
    *,
    current: Fraction,
    candidates: Mapping[str, Fraction],
    days: int,
    settings: OfferSettings,
    money: Any = str,
) -> Offer | None:
    """The candidate tariff saving the most, if it saves at least ``min_saving``."""
    best: tuple[int, str] | None = None
    for tariff_id, cost in sorted(candidates.items()):
        if tariff_id == current_tariff:
            continue
        saved = saving(current, cost)
        if saved >= settings.min_saving and (best is None or saved > best[0]):
            best = (saved, tariff_id)
    if best is None:
        return None
    saved, tariff_id = best
    reason = (
        f"your last {days} days would have cost {money(saved)} less on {tariff_id} "
        f"than on {current_tariff}"
    )
    return Offer("tariff", reason, tariff_id, saved)


def night(minute_of_day: int, settings: OfferSettings) -> bool:
    start = settings.night_start.hour * 60 + settings.night_start.minute
    end = settings.night_end.hour * 60 + settings.night_end.minute
    return minute_of_day >= start or minute_of_day < end


def emergency_offer(cutoff_minutes: Sequence[int], settings: OfferSettings) -> Offer | None:
    """``cutoff_minutes``: local minute of the day of each credit disconnection in the window."""
    at_night = sum(1 for m in cutoff_minutes if night(m, settings))
    if at_night < settings.night_cutoffs:
        return None
    reason = (
        f"cut off {at_night} times at night ({settings.night_start:%H:%M}-"
        f"{settings.night_end:%H:%M}) in the last {settings.window_days} days: "
        "emergency credit keeps the supply on until the next top-up"
    )
    return Offer("emergency_credit", reason)


def service_offers(
    facts: Mapping[str, Mapping[str, float]], rules: tuple[Rule, ...] = RULES
) -> list[Offer]:
    return [Offer(f"service:{rule.product}", reason) for rule, reason in matching(facts, rules)]
