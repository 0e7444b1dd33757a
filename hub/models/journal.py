"""The journal: append-only entries and their lines, and the (meter, seq) dedup table.

Sign convention: a line's ``amount`` is signed minor units ADDED to the account's balance.
Positive credits the account (a top-up to a customer, a provider's share); negative debits it
(a customer paying for usage, the clearing account paying out a top-up). Every entry's lines
sum to zero. Rows are never updated or deleted (database triggers refuse it, see migrations).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, String
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, EntryKind, UTCDateTime, utcnow


class JournalEntry(SQLModel, table=True):
    __tablename__ = "journal_entries"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    kind: EntryKind = Field(sa_type=String(32))
    currency: str = Field(max_length=3)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    effective_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    meter_id: str | None = Field(default=None, foreign_key="meters.id", max_length=64, index=True)
    seq: int | None = Field(default=None, sa_type=BigInteger)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    reverses_id: int | None = Field(
        default=None, foreign_key="journal_entries.id", sa_type=BigId, unique=True
    )
    memo: str = Field(default="", max_length=500)
    meta: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSON))


class JournalLine(SQLModel, table=True):
    __tablename__ = "journal_lines"
    __table_args__ = (Index("ix_journal_lines_account_id_id", "account_id", "id"),)
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    entry_id: int = Field(foreign_key="journal_entries.id", sa_type=BigId, index=True)
    account_id: str = Field(foreign_key="accounts.id", max_length=80)
    amount: int = Field(sa_type=BigInteger)


class PostedUsage(SQLModel, table=True):
    """One usage record posted: (meter, seq) is the dedup key; the registers (base units)
    at both ends of the interval are kept to check posted energy against the register.
    ``segment`` numbers the meter's register segments (0 first, one more after each register
    reset the hub accepted, ``hub.rating.register``): within a segment spans never overlap.
    ``current_mean_a``: the mean current (A) the agent read in the interval (protocol extension,
    issue 19; None from maps without a current register and older agents)."""

    __tablename__ = "posted_usage"
    meter_id: str = Field(foreign_key="meters.id", primary_key=True, max_length=64)
    seq: int = Field(primary_key=True, sa_type=BigInteger)
    entry_id: int = Field(foreign_key="journal_entries.id", sa_type=BigId, unique=True)
    import_start: int = Field(sa_type=BigInteger)
    import_end: int = Field(sa_type=BigInteger)
    segment: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    interval_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    interval_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    current_mean_a: float | None = Field(default=None)


class PaymentTransaction(SQLModel, table=True):
    """A payment provider's transaction, credited once: (provider, transaction id) is unique
    whatever account the callback names. It is a namespace of its own, apart from the API's
    ``Idempotency-Key``s (journal keys ``topup:<account>:<key>``), so no client can claim it."""

    __tablename__ = "payment_transactions"
    provider: str = Field(primary_key=True, max_length=64)
    transaction_id: str = Field(primary_key=True, max_length=80)
    entry_id: int = Field(foreign_key="journal_entries.id", sa_type=BigId, unique=True)
