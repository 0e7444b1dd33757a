"""What a provider key may touch (contract section 6): its own customers' meters, i.e. the
meters whose tariff (any version) has a component of that provider."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub.ledger._sql import meters
from hub.models import TariffVersion
from protocol.tariff import Tariff

_versions = TariffVersion.__table__  # type: ignore[attr-defined]


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
