"""Payment tables (issue 18): every payment received (top-up, provider callback, paper
remittance, bill-payment network), how it was split among the tiers, and which third party
confirmed it. A payment is ``pending`` until its verifier confirms it (no money moved),
``credited`` once its cash-in entry and allocation are posted, ``refused`` when the third party
said no."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class PaymentRecord(SQLModel, table=True):
    """One payment. ``source_key`` makes it idempotent per channel (``topup:<entry>``,
    ``callback:<provider>:<txn>``, ``remittance:<scan line digits>``, ``billpay:<network>:<txn>``);
    ``credit`` is what the policy left unallocated when it was credited (carried to later bills
    as ``payment_allocations`` of source ``credit``); ``policy`` the allocation policy version."""

    __tablename__ = "payments"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    account_id: str = Field(foreign_key="accounts.id", max_length=64, index=True)
    currency: str = Field(max_length=3)
    amount: int = Field(sa_type=BigInteger)
    credit: int = Field(default=0, sa_type=BigInteger)
    channel: str = Field(max_length=16)
    source_key: str = Field(max_length=200, unique=True)
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=16, index=True)
    policy: str | None = Field(default=None, max_length=32)
    entry_id: int | None = Field(default=None, foreign_key="journal_entries.id", sa_type=BigId)
    bill_id: int | None = Field(default=None, foreign_key="bills.id", sa_type=BigId)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    credited_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class PaymentAllocation(SQLModel, table=True):
    """Part of a payment allocated to one provider's charges on one bill; ``entry_id`` is the
    balanced allocation entry (a line per provider). ``source``: ``payment`` when the payment
    was credited, ``credit`` when its carried credit was applied to a later bill."""

    __tablename__ = "payment_allocations"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    payment_id: int = Field(foreign_key="payments.id", sa_type=BigId, index=True)
    bill_id: int = Field(foreign_key="bills.id", sa_type=BigId, index=True)
    provider_id: str = Field(max_length=64)
    tier: str = Field(max_length=16)
    amount: int = Field(sa_type=BigInteger)
    source: str = Field(max_length=8)
    entry_id: int = Field(foreign_key="journal_entries.id", sa_type=BigId)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PaymentVerification(SQLModel, table=True):
    """One attempt to confirm a payment with a third party: which verifier, its outcome
    (``confirmed``, ``refused``, ``unavailable``), what it said, and when."""

    __tablename__ = "payment_verifications"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    payment_id: int = Field(foreign_key="payments.id", sa_type=BigId, index=True)
    verifier: str = Field(max_length=80)
    outcome: str = Field(max_length=16)
    detail: str = Field(default="", max_length=500)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
