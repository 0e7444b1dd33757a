"""A meter's payers and supply after creation (issue 15 items 1, 2 and 5): sharers, the measured
supply mix, and ``PATCH /meters/{id}`` for ``customer`` and ``sharers``.

- **Sharers** (``POST /meters`` and ``PATCH``): ``[{"customer", "weight"}]``, each an existing
  customer at most once, weights integers >= 0 (0: uses the meter, pays nothing), at least one
  positive. They replace the meter's customer as its payers (``hub.rating.payers``); the
  customer still names whose credit rules and memory the meter follows when it contributes.
- **Supply mix** (``POST /meters/{id}/supply-mix``): the measured share of each generation
  provider in ``[from, to)``. Shares are decimal strings summing to exactly 1, each naming an
  existing ``generation`` provider. They split the amount of the meter's pool: the ONE
  generation-tier provider of the tariff version in force at ``from`` (none or several: 422).
  A provider key may post only for meters whose pool is its own provider (it measures its
  plants' delivery); admin keys for any meter. A period may start no earlier than the end of
  the meter's newest settled interval (409: settled intervals are never re-rated). A new period
  closes the meter's open one (no ``to``) that started before it; any other overlap is a 409.
- **Payer changes** (``PATCH``): ``customer`` and ``sharers`` (null: no sharers) take effect
  ``from`` a moment (default now), neither in the future nor before the end of the newest
  settled interval nor before the previous change: intervals starting before it stay with the
  old payers, the others go to the new ones (``meter_payers``, read by the ingest planner).
  A meter with a split rule (``meters.split_rule``) is still paid by that rule.

Every change is one ``meter_changed`` audit event (``hub.audit``) in its own transaction, read
by ``GET /meters/{id}/history``. The application layer: no import of ``hub.api``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from hub.audit import METER_CHANGED, record_change
from hub.control.credit_state import queue_credit_states_in
from hub.errors import ConflictError, ForbiddenError, InvalidInputError, NotFoundError
from hub.models import (
    Customer,
    GenerationMix,
    Meter,
    MeterCustomer,
    MeterPayer,
    PostedUsage,
    Provider,
    Tier,
)
from hub.rating.payers import load_sharers
from hub.rating.tariffs import load_histories

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the start of a meter's payers before any change

SharerIn = tuple[str, int]  # (customer, weight)


@dataclass(frozen=True)
class MixPeriod:
    id: int
    meter: str
    pool: str
    start: datetime
    end: datetime | None
    shares: dict[str, str]


# -- sharers -----------------------------------------------------------------------------------


def check_sharers(session: Session, sharers: Sequence[SharerIn]) -> list[dict[str, Any]]:
    """``sharers`` as stored (``[{"customer", "weight"}]`` in customer order), or 422."""
    seen: set[str] = set()
    for n, (customer, weight) in enumerate(sharers):
        if customer in seen:
            raise InvalidInputError(f"sharers[{n}].customer", f"{customer!r} is listed twice")
        seen.add(customer)
        if weight < 0:
            raise InvalidInputError(f"sharers[{n}].weight", "must be an integer >= 0")
        if session.get(Customer, customer) is None:
            raise InvalidInputError(f"sharers[{n}].customer", f"unknown customer {customer!r}")
    if not any(weight > 0 for _, weight in sharers):
        raise InvalidInputError("sharers", "at least one sharer must have a positive weight")
    return [{"customer": c, "weight": w} for c, w in sorted(sharers)]


def set_sharers(session: Session, meter_id: str, sharers: Sequence[Mapping[str, Any]]) -> None:
    """Replace the meter's ``meter_customers`` rows (its current sharers)."""
    session.connection().execute(
        delete(MeterCustomer).where(col(MeterCustomer.meter_id) == meter_id)
    )
    for s in sharers:
        weight = int(s["weight"])
        session.add(MeterCustomer(meter_id=meter_id, customer_id=str(s["customer"]),
                                  weight=weight, contributes=weight > 0))  # fmt: skip
    session.flush()


def current_sharers(session: Session, meter_id: str) -> list[dict[str, Any]] | None:
    rows = load_sharers(session.connection(), [meter_id]).get(meter_id, ())
    if not rows:
        return None
    return [{"customer": s.account, "weight": s.weight if s.contributes else 0} for s in rows]


# -- PATCH -------------------------------------------------------------------------------------


def change_payers(
    session: Session, meter_id: str, given: Mapping[str, Any], *, key_id: int | None,
    now: datetime,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Apply ``given`` (``customer``, ``sharers`` as ``SharerIn`` pairs or None, ``from``) in
    the caller's transaction; the changes made, per field ``{"from", "to"}``."""
    meter = session.get(Meter, meter_id)
    if meter is None:
        raise NotFoundError("meter", meter_id)
    customer, sharers = str(meter.customer_id), current_sharers(session, meter_id)
    new_customer, new_sharers = customer, sharers
    if "customer" in given:
        if session.get(Customer, given["customer"]) is None:
            raise InvalidInputError("customer", f"unknown customer {given['customer']!r}")
        new_customer = str(given["customer"])
    if "sharers" in given:
        pairs = given["sharers"]
        new_sharers = None if pairs is None else check_sharers(session, pairs)
    if (new_customer, new_sharers) == (customer, sharers):
        return {}
    start = given.get("from") or now
    _check_from(session, meter_id, start, now)
    periods = session.exec(select(MeterPayer).where(col(MeterPayer.meter_id) == meter_id)
                           .order_by(col(MeterPayer.valid_from).desc())).all()  # fmt: skip
    if periods and start < periods[0].valid_from.astimezone(UTC):
        raise ConflictError(f"from: the meter's payers last changed at {periods[0].valid_from}")
    if not periods:
        session.add(MeterPayer(meter_id=meter_id, valid_from=EPOCH, customer_id=customer,
                               sharers=sharers))  # fmt: skip
    session.add(MeterPayer(meter_id=meter_id, valid_from=start, customer_id=new_customer,
                           sharers=new_sharers))  # fmt: skip
    meter.customer_id = new_customer
    session.add(meter)
    set_sharers(session, meter_id, new_sharers or [])
    changed: dict[str, dict[str, Any]] = {}
    if new_customer != customer:
        changed["customer"] = {"from": customer, "to": new_customer}
    if new_sharers != sharers:
        changed["sharers"] = {"from": sharers, "to": new_sharers}
    changed["from"] = {"from": None, "to": start.isoformat()}
    record_change(session, METER_CHANGED, key_id=key_id, subject=("meter", meter_id),
                  changed=changed, meter_id=meter_id)  # fmt: skip
    queue_credit_states_in(session.connection(), [meter_id], reason="meter payers changed")
    return changed


def _check_from(session: Session, meter_id: str, start: datetime, now: datetime) -> None:
    if start > now:
        raise InvalidInputError("from", "cannot be in the future")
    settled = newest_settled(session, meter_id)
    if settled is not None and start < settled:
        raise ConflictError(f"from: the meter's intervals up to {settled} are settled")


def newest_settled(session: Session, meter_id: str) -> datetime | None:
    """The end of the meter's newest settled interval (None: nothing settled)."""
    stmt = select(func.max(PostedUsage.interval_end)).where(col(PostedUsage.meter_id) == meter_id)
    value = session.exec(stmt).one()
    return None if value is None else value.astimezone(UTC)


# -- supply mix --------------------------------------------------------------------------------


def add_supply_mix(
    session: Session, meter_id: str, start: datetime, end: datetime | None,
    shares: Mapping[str, Decimal], *, provider: str | None, key_id: int | None,
) -> MixPeriod:  # fmt: skip
    """Record a measured supply mix (see the module); ``provider``: the caller's provider when
    it is a provider key (None: an admin)."""
    meter = session.get(Meter, meter_id)
    if meter is None:
        raise NotFoundError("meter", meter_id)
    if end is not None and end <= start:
        raise InvalidInputError("to", "must be after from")
    measured = _measured(session, shares)
    pool = _pool(session, meter, start)
    if provider is not None and provider != pool:
        raise ForbiddenError(f"this key may only post the mix of its own pool, not {pool!r}")
    settled = newest_settled(session, meter_id)
    if settled is not None and start < settled:
        raise ConflictError(f"from: the meter's intervals up to {settled} are settled")
    rows = session.exec(select(GenerationMix).where(col(GenerationMix.meter_id) == meter_id,
                                                    GenerationMix.pool == pool)).all()  # fmt: skip
    for row in rows:
        row_start = row.start.astimezone(UTC)
        row_end = None if row.end is None else row.end.astimezone(UTC)
        if row_end is None and row_start < start:
            row.end = start  # the new period closes the open one
            session.add(row)
        elif row_start < (end or datetime.max.replace(tzinfo=UTC)) and start < (
            row_end or datetime.max.replace(tzinfo=UTC)
        ):
            raise ConflictError(f"overlaps the supply mix from {row_start} (id {row.id})")
    mix = GenerationMix(meter_id=meter_id, pool=pool, start=start, end=end, measured=measured)
    session.add(mix)
    session.flush()
    assert mix.id is not None
    given = {p: str(v) for p, v in sorted(shares.items())}
    to = {"from": start.isoformat(), "to": None if end is None else end.isoformat(),
          "pool": pool, "shares": given}  # fmt: skip
    record_change(session, METER_CHANGED, key_id=key_id, subject=("meter", meter_id),
                  changed={"supply_mix": {"from": None, "to": to}}, meter_id=meter_id,
                  by=None if provider is None else f"provider:{provider}")  # fmt: skip
    return MixPeriod(mix.id, meter_id, pool, start, end, given)


def _measured(session: Session, shares: Mapping[str, Decimal]) -> dict[str, int]:
    """The shares as integers of one scale (``hub.rating.mix``), or 422."""
    if not shares:
        raise InvalidInputError("shares", "name at least one generation provider")
    for name, share in sorted(shares.items()):
        found = session.get(Provider, name)
        if found is None:
            raise InvalidInputError(f"shares.{name}", f"unknown provider {name!r}")
        if found.tier != Tier.GENERATION:
            raise InvalidInputError(f"shares.{name}", f"{name!r} is not a generation provider")
        if not 0 <= share <= 1:
            raise InvalidInputError(f"shares.{name}", "must be between 0 and 1")
    if sum(shares.values(), Decimal(0)) != 1:
        raise InvalidInputError("shares", "must sum to exactly 1")
    places = max(-int(s.as_tuple().exponent) for s in shares.values())
    scale = 10 ** max(places, 0)
    return {name: int(share * scale) for name, share in sorted(shares.items())}


def _pool(session: Session, meter: Meter, start: datetime) -> str:
    """The one generation-tier provider of the meter's tariff version in force at ``start``."""
    history = load_histories(session.connection(), [meter.tariff_id or ""]).get(
        meter.tariff_id or ""
    )
    if history is None:
        raise InvalidInputError("shares", f"meter {meter.id!r} has no tariff to split")
    tariff = history.at(start)
    names = sorted({c.provider for c in tariff.components})
    generation = list(session.exec(select(Provider.id).where(
        col(Provider.id).in_(names), Provider.tier == Tier.GENERATION)))  # fmt: skip
    if len(generation) != 1:
        raise InvalidInputError(
            "shares", f"tariff {tariff.id!r} needs exactly one generation provider to split, "
            f"has {sorted(generation)}"
        )  # fmt: skip
    return str(generation[0])
