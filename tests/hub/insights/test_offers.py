"""Offers as pure decisions: the tariff saving most and at least the minimum, the emergency
credit plan for night cut-offs, the rule table, and none when withheld."""

from __future__ import annotations

from fractions import Fraction

from hub.insights.offers import (
    OfferSettings,
    emergency_offer,
    service_offers,
    tariff_offer,
    withheld,
)

SETTINGS = OfferSettings(min_saving=100)


def test_the_tariff_saving_most_and_enough() -> None:
    costs = {"a": Fraction(9_950), "b": Fraction(9_700, 1) + Fraction(1, 3), "c": Fraction(10_200)}
    found = tariff_offer("now", current=Fraction(10_000), candidates=costs, days=90,
                         settings=SETTINGS)  # fmt: skip
    assert found is not None and found.tariff == "b" and found.saving == 299  # rounded down
    assert "299" in found.reason and "90 days" in found.reason
    small = tariff_offer("now", current=Fraction(10_000), candidates={"a": Fraction(9_901)},
                         days=90, settings=SETTINGS)  # fmt: skip
    assert small is None  # 99 < 100


def test_emergency_credit_for_night_cut_offs() -> None:
    assert emergency_offer([22 * 60, 3 * 60], SETTINGS) is not None
    assert emergency_offer([22 * 60, 12 * 60], SETTINGS) is None  # one at night only
    offer = emergency_offer([20 * 60, 6 * 60 + 59, 23 * 60], SETTINGS)
    assert offer is not None and "3 times at night" in offer.reason


def test_rule_table() -> None:
    facts = {
        "electricity": {"daily_average": 9000.0, "share_day": 0.6, "share_off_peak": 0.2},
        "water": {"daily_average": 300.0, "share_peak": 0.1, "share_off_peak": 0.4},
    }
    kinds = sorted(o.kind for o in service_offers(facts))
    assert kinds == ["service:leak_check", "service:solar_subscription"]
    assert service_offers({"electricity": {"daily_average": 2000.0, "share_day": 0.9}}) == []


def test_withheld() -> None:
    assert withheld(protected=False, opted_out=False) is None
    assert "review" in (withheld(protected=True, opted_out=False) or "")
    assert "opted out" in (withheld(protected=False, opted_out=True) or "")
