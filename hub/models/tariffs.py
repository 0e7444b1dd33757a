"""Tariffs and their versions. A version's ``document`` is the tariff definition as the
protocol layer serialises it (JSON text); the ledger treats it as opaque."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Text
from sqlmodel import Field, SQLModel

from hub.models.parties import Currency
from hub.models.types import UTCDateTime, utcnow


class TariffBase(SQLModel):
    currency: Currency = Field(max_length=3)
    name: str = Field(default="", max_length=200)


class Tariff(TariffBase, table=True):
    __tablename__ = "tariffs"
    id: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # may be offered to customers whose past usage would have cost less on it (hub.insights)
    offer: bool = Field(default=False, sa_column_kwargs={"server_default": "0"})


class TariffVersion(SQLModel, table=True):
    """Version ``version`` of a tariff, in force from ``valid_from`` (UTC) until the next one."""

    __tablename__ = "tariff_versions"
    tariff_id: str = Field(foreign_key="tariffs.id", primary_key=True, max_length=64)
    version: int = Field(primary_key=True, sa_type=BigInteger)
    valid_from: datetime = Field(sa_type=UTCDateTime, index=True)
    document: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
