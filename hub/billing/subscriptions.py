"""Recurring, unmetered services (contract section 6, ``POST /subscriptions``): a monthly
charge from one provider (internet, waste collection), posted to the ledger in advance for each
month from the subscription's start (entry kind ``subscription``, idempotency key
``subscription:<id>:<YYYY-MM>``), so posting a month twice posts nothing new. The first month
is prorated by days: ``per_month * days_left // days_in_month`` (the days from the start day to
the month's end, both counted). Bills show it as one line, unit ``month``, with the monthly
rate."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub import ledger
from hub.billing.periods import Period
from hub.errors import InvalidInputError, NotFoundError
from hub.models import Customer, EntryKind, Provider, Subscription, table, utcnow
from protocol.money import to_major

log = logging.getLogger(__name__)
_subs = table(Subscription)
_providers = table(Provider)
_customers = table(Customer)


@dataclass(frozen=True)
class Charge:
    period: Period
    amount: int
    days: int  # days charged (the whole month, or what is left of the first)
    at: datetime


def month_charge(per_month: int, start: date, period: Period, zone: ZoneInfo) -> Charge | None:
    """The charge for ``period`` of a subscription starting on ``start`` (pure)."""
    first = Period(start.year, start.month)
    if period < first:
        return None
    days = period.days()
    if period == first:
        left = days - start.day + 1
        at = datetime.combine(start, time(0), zone)
        return Charge(period, per_month * left // days, left, at)
    return Charge(period, per_month, days, period.start(zone))


def create_subscription(conn: Connection, values: dict[str, Any]) -> None:
    """Insert a subscription (``id``, ``customer``, ``provider``, ``service``, ``per_month``
    in minor units, ``currency``, ``start``); InvalidInputError / NotFoundError naming the field."""
    if conn.execute(select(_customers.c.id).where(_customers.c.id == values["customer"])).first() \
            is None:  # fmt: skip
        raise InvalidInputError("customer", f"unknown customer {values['customer']!r}")
    if conn.execute(select(_providers.c.id).where(_providers.c.id == values["provider"])).first() \
            is None:  # fmt: skip
        raise InvalidInputError("provider", f"unknown provider {values['provider']!r}")
    conn.execute(_subs.insert().values(
        id=values["id"], customer_id=values["customer"], provider_id=values["provider"],
        service=values["service"], per_month=values["per_month"], currency=values["currency"],
        start=values["start"], created_at=utcnow()))  # fmt: skip


def post_due(conn: Connection, until: Period, zone: ZoneInfo) -> int:
    """Post every subscription's charge for each month from its start up to ``until``;
    returns how many entries were new."""
    new = 0
    rows = conn.execute(select(_subs, _providers.c.account_id)
                        .join(_providers, _providers.c.id == _subs.c.provider_id)
                        .order_by(_subs.c.id)).all()  # fmt: skip
    for sub in rows:
        period = Period(sub.start.year, sub.start.month)
        while period <= until:
            charge = month_charge(int(sub.per_month), sub.start, period, zone)
            if charge is not None and charge.amount > 0:
                new += _post(conn, sub, charge)
            period = period.next()
    return new


def _post(conn: Connection, sub: Any, charge: Charge) -> int:
    meta = {"subscription": sub.id, "service": sub.service, "provider": sub.provider_id,
            "rate": to_major(int(sub.per_month), sub.currency), "quantity": 1,
            "period": str(charge.period), "days": charge.days}  # fmt: skip
    result = ledger.post(
        conn, EntryKind.SUBSCRIPTION, [(sub.customer_id, -charge.amount),
                                        (sub.account_id, charge.amount)], sub.currency,
        effective_at=charge.at, memo=f"{sub.service} {charge.period}", metadata=meta,
        idempotency_key=f"subscription:{sub.id}:{charge.period}", enforce_floor=False,
    )  # fmt: skip
    return 1 if result.created else 0


def get_subscription(conn: Connection, sub_id: str) -> dict[str, Any]:
    row = conn.execute(select(_subs).where(_subs.c.id == sub_id)).first()
    if row is None:
        raise NotFoundError("subscription", sub_id)
    return {"id": row.id, "customer": row.customer_id, "provider": row.provider_id,
            "service": row.service, "per_month": to_major(int(row.per_month), row.currency),
            "currency": row.currency, "start": row.start.isoformat()}  # fmt: skip
