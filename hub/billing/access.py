"""What a provider key may touch (contract section 6): its own customers and their meters: a
meter whose tariff (any version) has a component of that provider, a customer with such a
meter or a subscription with it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub.ledger.sql import meters
from hub.models import Subscription, TariffVersion, table
from protocol.tariff import Tariff

_versions = table(TariffVersion)
_subscriptions = table(Subscription)


def provider_of(account_id: str | None) -> str:
    """The provider id of a provider key's account (``provider:<id>``)."""
    return (account_id or "").removeprefix("provider:")


def serves_meter(conn: Connection, provider: str, meter_id: str) -> bool:
    tariff_id = conn.execute(select(meters.c.tariff_id).where(meters.c.id == meter_id)).scalar()
    if tariff_id is None:
        return False
    documents = conn.execute(select(_versions.c.document)
                             .where(_versions.c.tariff_id == tariff_id)).scalars()  # fmt: skip
    return any(provider in Tariff.model_validate_json(d).providers for d in documents)


def serves_customer(conn: Connection, provider: str, customer_id: str) -> bool:
    """A customer is the provider's if one of its meters is, or it has a subscription with it."""
    subscribed = conn.execute(
        select(_subscriptions.c.id).where(
            (_subscriptions.c.customer_id == customer_id)
            & (_subscriptions.c.provider_id == provider)
        )
    ).first()
    if subscribed is not None:
        return True
    mine = conn.execute(select(meters.c.id).where(meters.c.customer_id == customer_id)).scalars()
    return any(serves_meter(conn, provider, m) for m in mine)
