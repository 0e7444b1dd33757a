"""Billing tables (issue 17): bills, their lines, gapless number counters, billing runs and
recurring subscriptions. A bill is written once and never updated (an issued bill never
changes); what arrives late for its period is billed on the next bill as an adjustment line."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class BillCounter(SQLModel, table=True):
    """The last bill number used per issuer and year: incremented in the bill's transaction,
    so numbers are gapless (a rolled-back bill rolls its number back too)."""

    __tablename__ = "bill_counters"
    issuer: str = Field(primary_key=True, max_length=16)
    year: int = Field(primary_key=True)
    last: int = Field(default=0, sa_type=BigInteger)


class BillingRun(SQLModel, table=True):
    """A period billed: running it again returns its bills."""

    __tablename__ = "billing_runs"
    period: str = Field(primary_key=True, max_length=7)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Bill(SQLModel, table=True):
    """One customer's bill for one period (amounts in minor units). ``balance`` is what the
    customer owes after this bill (``balance_forward + charges - payments``, negative: in
    credit); ``amount_due`` is that, at least 0, for a postpaid customer and 0 for a statement."""

    __tablename__ = "bills"
    __table_args__ = (UniqueConstraint("customer_id", "period"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    number: str = Field(max_length=32, unique=True)
    issuer: str = Field(max_length=16)
    customer_id: str = Field(max_length=64, index=True)
    period: str = Field(max_length=7, index=True)
    currency: str = Field(max_length=3)
    billing: str = Field(max_length=8)  # prepaid | postpaid
    charges: int = Field(sa_type=BigInteger)
    payments: int = Field(sa_type=BigInteger)
    balance_forward: int = Field(sa_type=BigInteger)
    balance: int = Field(sa_type=BigInteger)
    amount_due: int = Field(sa_type=BigInteger)
    due_date: date | None = None
    reference: str | None = Field(default=None, max_length=32)
    scan_line: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=16)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class BillLine(SQLModel, table=True):
    """One line: a service's charge by one provider in one unit (``kind`` ``charge``), a late
    charge for an earlier period (``adjustment``, ``for_period`` that period), or the
    payments counted for a period (``payment``: provider and service empty, not shown)."""

    __tablename__ = "bill_lines"
    __table_args__ = (Index("ix_bill_lines_bill", "bill_id", "position"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    bill_id: int = Field(foreign_key="bills.id", sa_type=BigId)
    position: int
    kind: str = Field(max_length=16)
    for_period: str = Field(max_length=7)
    service: str = Field(default="", max_length=32)
    provider_id: str = Field(default="", max_length=64)
    tier: str = Field(default="", max_length=16)
    unit: str = Field(default="", max_length=8)
    quantity: int = Field(default=0, sa_type=BigInteger)  # base units (Wh, L, days, months)
    rate: str | None = Field(default=None, max_length=32)
    amount: int = Field(sa_type=BigInteger)


class Subscription(SQLModel, table=True):
    """A recurring, unmetered service charged monthly by one provider (``per_month`` in minor
    units), prorated by days for the month it starts in."""

    __tablename__ = "subscriptions"
    id: str = Field(primary_key=True, max_length=64)
    customer_id: str = Field(foreign_key="customers.id", max_length=64, index=True)
    provider_id: str = Field(foreign_key="providers.id", max_length=64)
    service: str = Field(max_length=32)
    per_month: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    start: date
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MeterFeed(SQLModel, table=True):
    """Where a meter's usage comes from: ``import`` (readings imports post it, through the
    ingest path) once a reading was posted for a meter its gateway never reported for."""

    __tablename__ = "meter_feeds"
    meter_id: str = Field(foreign_key="meters.id", primary_key=True, max_length=64)
    source: str = Field(max_length=16)
    since: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ReadingMismatch(SQLModel, table=True):
    """An imported reading that disagrees with what the meter's gateway reported: the register
    at ``at`` lay within the posted record ``seq`` (``import_start``..``import_end``), and the
    import says ``reading``. No money effect."""

    __tablename__ = "reading_mismatches"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    meter_id: str = Field(max_length=64, index=True)
    at: datetime = Field(sa_type=UTCDateTime)
    reading: int = Field(sa_type=BigInteger)
    seq: int = Field(sa_type=BigInteger)
    import_start: int = Field(sa_type=BigInteger)
    import_end: int = Field(sa_type=BigInteger)
    source: str = Field(default="", max_length=80)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProfileField(SQLModel, table=True):
    """One field of a customer's profile (contract section 6) and its source: which provider
    (or ``admin``) gave it, and when. ``scope`` is the provider for a provider's own account
    number (each provider has its own), empty for the fields all sources share."""

    __tablename__ = "profile_fields"
    customer_id: str = Field(foreign_key="customers.id", primary_key=True, max_length=64)
    field: str = Field(primary_key=True, max_length=32)
    scope: str = Field(default="", primary_key=True, max_length=64)
    value: str = Field(max_length=500)
    source: str = Field(max_length=80)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class ProfileConflict(SQLModel, table=True):
    """A value a source gave that differs from another source's: kept here, not applied,
    until an admin sets the field (``resolved_at``)."""

    __tablename__ = "profile_conflicts"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    customer_id: str = Field(max_length=64, index=True)
    field: str = Field(max_length=32)
    have: str = Field(max_length=500)
    have_source: str = Field(max_length=80)
    got: str = Field(max_length=500)
    source: str = Field(max_length=80)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


__all__ = ["Bill", "BillCounter", "BillLine", "BillingRun", "MeterFeed", "ProfileConflict",
           "ProfileField", "ReadingMismatch", "Subscription"]  # fmt: skip
