"""How one interval of a meter is priced: by its tariff, or by the providers a selection policy
chooses among several tariffs (issue 15 item 3, claims 14, 16-18; contract section 5). Pure.

A meter's pricing is a history (:class:`MeterPricing`, from ``meter_pricing``): from each
step's ``start`` on, until the next step's, either one tariff or a ``selection``
(``{"policy", "tariffs"}``). The step in force at an interval's start applies, so a change
"from a date" prices the intervals that end by then by the old step and those that start then
or later by the new one (an interval across the date: the old); within a step, each tariff's
version is the one in force at the interval's end (``hub.rating.tariffs``). A meter without
steps is priced by its tariff.

:func:`choose` turns a selection into the tariff one interval is rated with:

- each candidate tariff (the version in force) is split into offers, one per provider, in the
  provider's tier (``providers.tier``); a provider may offer in one candidate tariff only;
- ``sla``: a tier in which the customer has an agreement (``slas``) in force at the interval's
  start with a provider
  that offers it is served by that provider (the lowest provider id if several); the other
  tiers by the lowest total cost for the interval;
- ``least_cost``: the combination of providers, one per tier, with the lowest total for the
  interval (``hub.rating.selection``: the contract's ``least_cost``, that module's policy of
  the same name);
- ``priority``: in each tier the provider paying the highest priority fee; the fee
  (``providers.priority_fee`` per kWh, or per m3 for water) times the interval's energy is owed
  by that provider to the platform (``Choice.fees``, apportioned with a carry of its own by the
  planner).

Costs are compared for the interval alone (its energy, its time-of-use window; inclining
blocks as from the start of a month), and for an interval with no energy as for 1 kWh, so the
choice recorded is the one a unit of use would get. The chosen offers amount to one tariff
(``Choice.tariff``, id ``selection``), which the ingest planner rates with and the agent is
sent in its credit state (with the choice, ``Choice.meta``), so both price the same way.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any

from hub.rating.selection import Offer, SelectionError, Use, select
from protocol.tariff import Component, Tariff

POLICIES = ("sla", "least_cost", "priority")
SELECTION_TARIFF = "selection"
NOMINAL_ENERGY = 1000  # base units an interval with no energy is compared for
_CACHE_MAX = 1024
_combined: dict[tuple[Any, ...], Tariff] = {}


@dataclass(frozen=True)
class Step:
    """From ``start`` on: ``tariff_id`` alone, or (``policy`` set) a selection among
    ``tariffs``."""

    start: datetime
    tariff_id: str
    policy: str | None = None
    tariffs: tuple[str, ...] = ()

    @property
    def tariff_ids(self) -> tuple[str, ...]:
        return self.tariffs if self.policy is not None else (self.tariff_id,)


@dataclass(frozen=True)
class MeterPricing:
    steps: tuple[Step, ...]  # ascending ``start``

    def at(self, moment: datetime) -> Step:
        """The step in force at ``moment`` (the first one before any step starts)."""
        index = bisect.bisect_right([s.start for s in self.steps], moment) - 1
        return self.steps[max(index, 0)]

    @property
    def tariff_ids(self) -> set[str]:
        return {t for s in self.steps for t in s.tariff_ids}


@dataclass(frozen=True)
class Agreement:
    provider: str
    start: datetime
    end: datetime | None = None

    def covers(self, moment: datetime) -> bool:
        return self.start <= moment and (self.end is None or moment < self.end)


@dataclass(frozen=True)
class Market:
    """What selection reads besides tariffs: each provider's tier, the priority fees (minor
    units per base unit) and each customer's agreements."""

    tiers: Mapping[str, str] = field(default_factory=dict)
    fees: Mapping[str, Fraction] = field(default_factory=dict)
    slas: Mapping[str, Sequence[Agreement]] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """What to rate an interval with, what the entry records (``meta``, None for a plain
    tariff) and the priority fee rate each chosen provider owes (minor units per base unit)."""

    tariff: Tariff
    meta: dict[str, Any] | None = None
    fees: Mapping[str, Fraction] = field(default_factory=dict)


def choose(
    step: Step,
    versions: Sequence[Tariff],
    market: Market,
    customer: str | None,
    interval: tuple[datetime, datetime, int],
) -> Choice:
    """The choice for one interval; ``versions``: the version in force at its end of each of
    ``step.tariff_ids``, in that order; ``interval``: its start, end and energy.
    SelectionError when no valid choice exists."""
    start, end, energy = interval
    if step.policy is None:
        return Choice(versions[0])
    first = versions[0]
    if any(t.currency != first.currency or t.timezone != first.timezone for t in versions):
        raise SelectionError("the candidate tariffs differ in currency or time zone")
    offers, source = _offers(versions, market)
    agreements: dict[str, str] = {}
    if step.policy == "sla":
        offered = {(o.tier, o.provider) for o in offers}
        for a in sorted(market.slas.get(customer or "", ()), key=lambda a: a.provider):
            tier = market.tiers.get(a.provider)
            if tier is not None and a.covers(start) and (tier, a.provider) in offered:
                agreements.setdefault(tier, a.provider)
    use = Use(start, end, energy if energy > 0 else NOMINAL_ENERGY)
    chosen = select(step.policy, offers, [use], agreements=agreements,
                    currency=first.currency, timezone=first.timezone)  # fmt: skip
    picked = chosen.offers(offers)
    key = (first.currency, first.timezone, tuple((o.provider, source[o.provider]) for o in picked))
    tariff = _combined.get(key)
    if tariff is None:
        tariff = chosen.tariff(picked, SELECTION_TARIFF, first.currency, first.timezone)
        if len(_combined) >= _CACHE_MAX:
            _combined.clear()
        _combined[key] = tariff
    meta: dict[str, Any] = {
        "policy": step.policy,
        "providers": dict(sorted(chosen.chosen.items())),
        "by": dict(sorted(chosen.by.items())),
        "tariffs": {o.provider: "{}@{}".format(*source[o.provider]) for o in picked},
    }
    fees: dict[str, Fraction] = {}
    if step.policy == "priority":
        fees = {o.provider: Fraction(o.priority_fee) for o in picked if o.priority_fee > 0}
    return Choice(tariff, meta, fees)


def _offers(
    versions: Sequence[Tariff], market: Market
) -> tuple[list[Offer], dict[str, tuple[str, int]]]:
    """One offer per provider of the candidate tariffs, and the tariff (id, version) of each."""
    by_provider: dict[str, list[Component]] = {}
    source: dict[str, tuple[str, int]] = {}
    for tariff in versions:
        for c in tariff.components:
            owner = source.setdefault(c.provider, (tariff.id, tariff.version))
            if owner[0] != tariff.id:
                raise SelectionError(
                    f"provider {c.provider!r} offers in tariffs {owner[0]!r} and {tariff.id!r}"
                )
            by_provider.setdefault(c.provider, []).append(c)
    offers = []
    for provider, comps in by_provider.items():
        tier = market.tiers.get(provider)
        if tier is None:
            raise SelectionError(f"unknown provider {provider!r}")
        fee = market.fees.get(provider, Fraction(0))
        offers.append(Offer(provider, tier, tuple(comps), priority_fee=fee))
    return offers, source
