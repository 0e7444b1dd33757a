"""Offers made to customers by ``hub.insights`` (issue 19): one per customer, period and kind,
each with its reason; ``shown_at`` is when the customer first saw it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class InsightOffer(SQLModel, table=True):
    __tablename__ = "insight_offers"
    __table_args__ = (
        UniqueConstraint("customer_id", "period", "kind", name="uq_insight_offers_once"),
    )
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, index=True)
    period: str = Field(max_length=7)  # YYYY-MM
    kind: str = Field(max_length=32)  # tariff | emergency_credit | service:<product>
    tariff_id: str | None = Field(default=None, max_length=64)
    saving: int | None = Field(default=None, sa_type=BigInteger)  # minor units
    reason: str = Field(max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    shown_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
