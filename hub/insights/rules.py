"""The rule table of additional services (README, "Additional services"): a product is offered
when every condition holds for the customer's facts. Conditions compare a fact with a bound."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass

_OPS: dict[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Rule:
    product: str
    service: str  # the meter's service the facts come from
    conditions: tuple[tuple[str, str, float], ...]  # (fact, ">=" | "<=", bound)
    reason: str  # formatted with the facts


# Facts per service: daily_average (base units a day) and share_<window> (0..1 of the use in
# each default window: day 07-17, peak 17-21, off_peak 22-07, other).
RULES: tuple[Rule, ...] = (
    Rule(
        "solar_subscription",
        "electricity",
        (("daily_average", ">=", 8000), ("share_day", ">=", 0.5)),
        "uses {daily_average:.0f} Wh a day, {share_day:.0%} of it by day: solar covers daytime use",
    ),
    Rule(
        "leak_check",
        "water",
        (("share_off_peak", ">=", 0.3),),
        "{share_off_peak:.0%} of the water is used at night: a leak check may find a leak",
    ),
)


def matching(
    facts: Mapping[str, Mapping[str, float]], rules: tuple[Rule, ...] = RULES
) -> list[tuple[Rule, str]]:
    """The rules whose conditions hold; ``facts`` per service. Each with its reason."""
    out = []
    for rule in rules:
        mine = facts.get(rule.service)
        if mine is None:
            continue
        if all(f in mine and _OPS[op](mine[f], bound) for f, op, bound in rule.conditions):
            out.append((rule, rule.reason.format(**mine)))
    return out
