"""Provider selection's tables (issue 15 item 3, contract section 5): service-level agreements
and each meter's pricing history (a tariff, or a selection among tariffs, from a moment on).
A provider's priority fee is a column of ``providers``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class Sla(SQLModel, table=True):
    """A service-level agreement between ``customer_id`` and ``provider_id`` in force over
    ``[start, end)`` (``end`` None: open): the ``sla`` policy chooses that provider for its
    tier (``hub.rating.pricing``)."""

    __tablename__ = "slas"
    __table_args__ = (Index("ix_slas_customer_id_start", "customer_id", "start"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    customer_id: str = Field(foreign_key="customers.id", max_length=64)
    provider_id: str = Field(foreign_key="providers.id", max_length=64)
    start: datetime = Field(sa_type=UTCDateTime)
    end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MeterPricing(SQLModel, table=True):
    """How a meter is priced from ``start`` on, until its next row's ``start``: by
    ``tariff_id`` alone, or (``selection`` set: ``{"policy", "tariffs"}``) by the providers the
    policy chooses among those tariffs per interval. A meter without rows is priced by its
    ``meters.tariff_id``."""

    __tablename__ = "meter_pricing"
    __table_args__ = (Index("ix_meter_pricing_meter_id_start", "meter_id", "start"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    meter_id: str = Field(foreign_key="meters.id", max_length=64)
    start: datetime = Field(sa_type=UTCDateTime)
    tariff_id: str = Field(foreign_key="tariffs.id", max_length=64)
    selection: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
