"""Comparison with similar customers (pure), as Opower's home energy reports do: the same
service, service class and tariff; the group's median and its efficient quartile (the 25th
percentile: a quarter of the group uses less)."""

from __future__ import annotations

import statistics
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

MIN_GROUP = 5  # fewer similar customers: no comparison


@dataclass(frozen=True)
class Comparison:
    group: int  # similar customers, this one included
    value: int  # this customer's average use per day
    median: float
    efficient: float
    position: str  # efficient | below_median | above_median

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "daily_average": self.value,
            "median": self.median,
            "efficient": self.efficient,
            "position": self.position,
        }


def group_stats(values: list[int]) -> tuple[float, float] | None:
    """(median, efficient quartile) of a group's daily averages, None when too small."""
    if len(values) < MIN_GROUP:
        return None
    efficient = statistics.quantiles(values, n=4, method="inclusive")[0]
    return float(statistics.median(values)), float(efficient)


def compare_all(values: Mapping[str, int], keys: Mapping[str, Hashable]) -> dict[str, Comparison]:
    """Each customer (``values``: its daily average) against its group (``keys``)."""
    groups: dict[Hashable, list[str]] = {}
    for who, key in keys.items():
        if who in values:
            groups.setdefault(key, []).append(who)
    out: dict[str, Comparison] = {}
    for members in groups.values():
        stats = group_stats([values[m] for m in members])
        if stats is None:
            continue
        median, efficient = stats
        for m in members:
            v = values[m]
            position = (
                "efficient" if v <= efficient else "below_median" if v <= median else "above_median"
            )
            out[m] = Comparison(len(members), v, median, efficient, position)
    return out
