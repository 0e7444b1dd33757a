"""Provider selection by SLA, by lowest total cost across tiers, and by priority fee; the choice
is what the entry records, and it amounts to a tariff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.rating.selection import (
    Offer,
    SelectionError,
    Use,
    by_priority,
    by_sla,
    least_cost,
    profile_cost,
    select,
)
from protocol.tariff import Component

T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
PROFILE = [Use(T0 + timedelta(hours=h), T0 + timedelta(hours=h + 1), 1000) for h in range(24)]


def flat(provider: str, price: str, tier: str, **kw: object) -> Offer:
    comp = Component(provider=provider, per_kwh=Decimal(price))
    return Offer(provider=provider, tier=tier, components=(comp,), **kw)  # type: ignore[arg-type]


OFFERS = [
    flat("gen-a", "0.12", "generation"),
    flat("gen-b", "0.10", "generation", priority_fee=5),
    flat("gen-c", "0.09", "generation", partners=frozenset({"dist-x"})),
    flat("dist-x", "0.06", "distribution"),
    flat("dist-y", "0.04", "distribution", priority_fee=9),
]


def test_lowest_total_cost_respects_who_can_operate_together() -> None:
    # gen-c is cheapest but only works with dist-x: 0.09 + 0.06 = 0.15 > gen-b + dist-y = 0.14
    choice = least_cost(OFFERS, PROFILE)
    assert choice.chosen == {"generation": "gen-b", "distribution": "dist-y"}
    assert choice.cost == 24 * (10 + 4)  # cents over 24 kWh
    meta = choice.meta()
    assert meta["policy"] == "least_cost" and meta["providers"]["generation"] == "gen-b"
    tariff = choice.tariff(OFFERS, "chosen", "USD")
    assert tariff.providers == ("dist-y", "gen-b") or set(tariff.providers) == {"dist-y", "gen-b"}
    assert profile_cost(tariff, PROFILE) == choice.cost


def test_sla_pins_the_agreed_provider_and_optimises_the_rest() -> None:
    choice = by_sla(OFFERS, {"generation": "gen-c"}, PROFILE)
    assert choice.chosen == {"generation": "gen-c", "distribution": "dist-x"}
    assert choice.by == {"generation": "sla", "distribution": "cost"}
    with pytest.raises(SelectionError, match="offers no"):
        by_sla(OFFERS, {"generation": "dist-x"}, PROFILE)


def test_priority_fee_paid_to_the_smsa_wins_per_tier() -> None:
    choice = by_priority(OFFERS, PROFILE)
    assert choice.chosen == {"generation": "gen-b", "distribution": "dist-y"}
    assert select("priority", OFFERS, PROFILE).chosen == choice.chosen
    with pytest.raises(SelectionError, match="unknown selection policy"):
        select("cheapest", OFFERS, PROFILE)


def test_a_tax_in_one_tier_is_counted_in_the_total() -> None:
    taxed = Offer("ret-t", "retail", (Component(provider="ret-t", tax_rate=Decimal("0.5")),))
    fee = Offer("ret-f", "retail", (Component(provider="ret-f", per_kwh=Decimal("0.06")),))
    # a 50 % tax on 0.14 (=0.07) costs more than a flat 0.06 retail fee
    choice = least_cost([*OFFERS, taxed, fee], PROFILE)
    assert choice.chosen["retail"] == "ret-f"


def test_an_offer_cannot_price_another_providers_component() -> None:
    with pytest.raises(SelectionError):
        Offer("a", "generation", (Component(provider="b", per_kwh=Decimal("0.1")),))
    with pytest.raises(SelectionError):
        flat("a", "0.1", "generation", priority_fee=-1)


prices = st.decimals(min_value=0, max_value=1, places=4)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["generation", "distribution", "retail"]), prices),
                min_size=1, max_size=7))  # fmt: skip
def test_least_cost_is_never_beaten(entries: list[tuple[str, Decimal]]) -> None:
    offers = [
        Offer(f"p{i}", tier, (Component(provider=f"p{i}", per_kwh=price),))
        for i, (tier, price) in enumerate(entries)
    ]
    best = least_cost(offers, PROFILE[:3])
    for tier in {o.tier for o in offers}:
        cheapest = min(o.components[0].flat for o in offers if o.tier == tier)
        chosen = next(o for o in offers if o.provider == best.chosen[tier])
        assert chosen.components[0].flat == cheapest
