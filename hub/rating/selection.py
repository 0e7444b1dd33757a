"""Provider selection (claims 14, 16-18, 24-27): which provider serves each tier of a meter.

Pure. Candidates are ``Offer`` s: a provider, its tier, the tariff components it would charge
and the priority fee it pays the SMSA. Three policies:

- ``sla``: a tier named in the customer's service-level agreements is served by the provider
  the agreement names (claims 14, 17, 27); the other tiers are chosen by lowest total cost;
- ``least_cost`` (the contract's name; this module called it ``lowest_cost`` before it was
  wired into ingest): the combination of providers, one per tier, that together price the usage
  profile lowest, taxes included, honouring which providers can operate together (18, 25);
- ``priority``: in each tier the provider paying the SMSA the highest priority fee (26), ties
  broken by lower cost, then provider id.

The result, a ``Selection``, names the choice per tier and how it was made; ``meta()`` is what
the ledger records with each entry priced by it, and ``tariff()`` the tariff it amounts to.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from typing import Any, Literal

from protocol.rating import price_interval
from protocol.tariff import Component, Tariff

Policy = Literal["sla", "least_cost", "priority"]
POLICIES: tuple[str, ...] = ("sla", "least_cost", "priority")
MAX_COMBINATIONS = 100_000


class SelectionError(ValueError):
    """No valid choice: an agreement names a provider that does not offer the tier, etc."""


@dataclass(frozen=True)
class Offer:
    provider: str
    tier: str
    components: tuple[Component, ...]
    priority_fee: Fraction | int = 0  # minor units per base unit paid to the SMSA
    partners: frozenset[str] | None = None  # providers it operates with; None = any

    def __post_init__(self) -> None:
        if self.priority_fee < 0:
            raise SelectionError("a priority fee cannot be negative")
        if any(c.provider != self.provider for c in self.components):
            raise SelectionError(f"offer of {self.provider!r} prices another provider's component")


@dataclass(frozen=True)
class Use:
    """One interval of a usage profile against which total cost is compared."""

    start: datetime
    end: datetime
    energy: int


@dataclass(frozen=True)
class Selection:
    policy: str
    chosen: dict[str, str]  # tier -> provider
    cost: Fraction | None = None  # total over the profile, minor units (exact)
    by: dict[str, str] = field(default_factory=dict)  # tier -> "sla" | "cost" | "priority"

    def meta(self) -> dict[str, Any]:
        data: dict[str, Any] = {"policy": self.policy}
        data["providers"] = dict(sorted(self.chosen.items()))
        if self.by:
            data["by"] = dict(sorted(self.by.items()))
        if self.cost is not None:
            data["profile_cost"] = f"{self.cost.numerator}/{self.cost.denominator}"
        return data

    def tariff(
        self, offers: Iterable[Offer], tariff_id: str, currency: str, timezone: str = "UTC"
    ) -> Tariff:
        return combined_tariff(self.offers(offers), tariff_id, currency, timezone)

    def offers(self, offers: Iterable[Offer]) -> list[Offer]:
        return [o for o in offers if self.chosen.get(o.tier) == o.provider]


def combined_tariff(
    offers: Sequence[Offer], tariff_id: str, currency: str, timezone: str = "UTC"
) -> Tariff:
    comps = [c for o in offers for c in o.components]
    return Tariff(id=tariff_id, currency=currency, timezone=timezone, components=tuple(comps))


def profile_cost(tariff: Tariff, profile: Sequence[Use]) -> Fraction:
    """What the profile costs under ``tariff`` in total (minor units, exact)."""
    total = Fraction(0)
    month: str | None = None
    used = 0
    for use in profile:
        key = use.start.astimezone(tariff.zone).strftime("%Y-%m")
        if key != month:
            month, used = key, 0
        total += sum(price_interval(tariff, use.start, use.end, use.energy, used).values())
        used += use.energy
    return total


def _tiers(offers: Sequence[Offer]) -> dict[str, list[Offer]]:
    tiers: dict[str, list[Offer]] = {}
    for o in sorted(offers, key=lambda o: (o.tier, o.provider)):
        tiers.setdefault(o.tier, []).append(o)
    return tiers


def _compatible(combo: Sequence[Offer]) -> bool:
    names = {o.provider for o in combo}
    return all(o.partners is None or names - {o.provider} <= o.partners for o in combo)


def least_cost(
    offers: Sequence[Offer],
    profile: Sequence[Use],
    currency: str = "USD",
    timezone: str = "UTC",
    fixed: Mapping[str, str] | None = None,
) -> Selection:
    """One provider per tier, the combination with the lowest total cost over ``profile``.

    ``fixed`` pins tiers to providers (agreements); ties go to the smallest provider ids.
    """
    fixed = dict(fixed or {})
    tiers = _tiers(offers)
    for tier, provider in fixed.items():
        if not any(o.provider == provider for o in tiers.get(tier, [])):
            raise SelectionError(f"{provider!r} offers no {tier!r} service")
    choices = [
        [o for o in tiers[t] if t not in fixed or o.provider == fixed[t]] for t in sorted(tiers)
    ]
    count = 1
    for c in choices:
        count *= len(c)
    if count > MAX_COMBINATIONS:
        raise SelectionError(f"{count} combinations of providers is more than {MAX_COMBINATIONS}")
    best: tuple[Fraction, tuple[str, ...]] | None = None
    best_combo: tuple[Offer, ...] = ()
    for combo in itertools.product(*choices):
        if not _compatible(combo):
            continue
        cost = profile_cost(combined_tariff(combo, "candidate", currency, timezone), profile)
        key = (cost, tuple(o.provider for o in combo))
        if best is None or key < best:
            best, best_combo = key, combo
    if best is None:
        raise SelectionError("no combination of providers can operate together")
    by = {o.tier: ("sla" if o.tier in fixed else "cost") for o in best_combo}
    return Selection(
        policy="sla" if fixed else "least_cost",
        chosen={o.tier: o.provider for o in best_combo},
        cost=best[0],
        by=by,
    )


def by_sla(
    offers: Sequence[Offer],
    agreements: Mapping[str, str],
    profile: Sequence[Use],
    currency: str = "USD",
    timezone: str = "UTC",
) -> Selection:
    """Tiers under an agreement take the agreed provider; the rest the lowest total cost."""
    return least_cost(offers, profile, currency, timezone, fixed=agreements)


def by_priority(
    offers: Sequence[Offer], profile: Sequence[Use], currency: str = "USD", timezone: str = "UTC"
) -> Selection:
    """In each tier the provider paying the highest priority fee; ties by lower cost, then id."""
    chosen: dict[str, str] = {}
    for tier, candidates in _tiers(offers).items():

        def key(o: Offer) -> tuple[Fraction | int, Fraction, str]:
            own = combined_tariff([o], "candidate", currency, timezone)
            return (-o.priority_fee, profile_cost(own, profile), o.provider)

        chosen[tier] = min(candidates, key=key).provider
    return Selection(policy="priority", chosen=chosen, by=dict.fromkeys(chosen, "priority"))


def select(
    policy: str,
    offers: Sequence[Offer],
    profile: Sequence[Use],
    *,
    agreements: Mapping[str, str] | None = None,
    currency: str = "USD",
    timezone: str = "UTC",
) -> Selection:
    if policy == "sla":
        return by_sla(offers, agreements or {}, profile, currency, timezone)
    if policy == "least_cost":
        return least_cost(offers, profile, currency, timezone)
    if policy == "priority":
        return by_priority(offers, profile, currency, timezone)
    raise SelectionError(f"unknown selection policy {policy!r}; expected one of {POLICIES}")
