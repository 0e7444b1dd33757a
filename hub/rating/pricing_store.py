"""Reading what ``hub.rating.pricing`` decides with: meters' pricing histories
(``meter_pricing``), providers' tiers and priority fees, customers' agreements (``slas``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub.ledger.bulk import select_in
from hub.models import MeterPricing as PricingRow
from hub.models import Provider, Sla, table
from hub.rating.pricing import Agreement, Market, MeterPricing, Step
from protocol.money import exponent

_pricing = table(PricingRow)
_providers = table(Provider)
_slas = table(Sla)


def fee_per_base_unit(fee: str | Decimal, currency: str) -> Fraction:
    """A priority fee per kWh (or m3) in major units, as minor units per Wh (or litre)."""
    return Fraction(Decimal(fee)) * Fraction(10) ** exponent(currency) / 1000


def step_of(start: datetime, tariff_id: str, selection: dict[str, object] | None) -> Step:
    if not selection:
        return Step(start, tariff_id)
    tariffs = selection.get("tariffs") or ()
    assert isinstance(tariffs, list | tuple)
    return Step(start, tariff_id, str(selection["policy"]), tuple(str(t) for t in tariffs))


def load_pricing(conn: Connection, meter_ids: Iterable[str]) -> dict[str, MeterPricing]:
    """The pricing history of each of ``meter_ids`` that has one (one statement)."""
    rows = select_in(conn, _pricing, ("meter_id", "start", "tariff_id", "selection"),
                     "meter_id", sorted(set(meter_ids)),
                     order_by="meter_id, start, id")  # fmt: skip
    steps: dict[str, list[Step]] = {}
    for meter_id, start, tariff_id, selection in rows:
        steps.setdefault(meter_id, []).append(step_of(start, tariff_id, selection))
    return {m: MeterPricing(tuple(s)) for m, s in steps.items()}


def selecting(conn: Connection, tariff_id: str) -> set[str]:
    """The meters whose pricing history has a selection among ``tariff_id`` and others (few:
    every row with a selection is read)."""
    rows = conn.execute(select(_pricing.c.meter_id, _pricing.c.selection))
    return {m for m, chosen in rows if chosen and tariff_id in (chosen.get("tariffs") or ())}


def load_market(conn: Connection, customers: Iterable[str], currency: str) -> Market:
    """Every provider's tier and priority fee, and the agreements of ``customers``."""
    tiers: dict[str, str] = {}
    fees: dict[str, Fraction] = {}
    for pid, tier, fee in conn.execute(
        select(_providers.c.id, _providers.c.tier, _providers.c.priority_fee)
    ):
        tiers[pid] = str(tier)
        if fee:
            fees[pid] = fee_per_base_unit(fee, currency)
    slas: dict[str, list[Agreement]] = {}
    rows = select_in(conn, _slas, ("customer_id", "provider_id", "start", "end"), "customer_id",
                     sorted(set(customers)), order_by="customer_id, start, id")  # fmt: skip
    for customer, provider, start, end in rows:
        slas.setdefault(customer, []).append(Agreement(provider, start, end))
    return Market(tiers, fees, {c: tuple(a) for c, a in slas.items()})
