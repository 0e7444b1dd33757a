"""Offline top-up tokens (``hub.tokens``): each meter's token secret and every token vended."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class MeterTokenKey(SQLModel, table=True):
    """A meter's OpenPAYGO secret (never logged, never in an API answer) and the count of the
    newest token vended for it."""

    __tablename__ = "meter_token_keys"
    meter_id: str = Field(primary_key=True, foreign_key="meters.id", max_length=64)
    secret_key: str = Field(max_length=32)
    starting_code: int = Field(sa_type=BigInteger)
    last_count: int = Field(default=0, sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class TopupToken(SQLModel, table=True):
    """A vended token. ``status``: ``vended`` (its money is in the token-clearing account),
    ``settled`` (redeemed at the gateway and reported: the money is back in ``account_id``,
    spendable through the meter) or ``cancelled`` (refunded to ``account_id``; the gateway
    refuses it). ``redeemed``: the gateway reported it (a cancelled token the gateway took
    before it heard of the cancellation is ``cancelled`` and ``redeemed``: the refund already
    paid its money, so nothing more moves)."""

    __tablename__ = "topup_tokens"
    __table_args__ = (UniqueConstraint("meter_id", "count", name="uq_topup_tokens_meter_count"),)
    id: str = Field(primary_key=True, max_length=32)
    meter_id: str = Field(foreign_key="meters.id", max_length=64, index=True)
    account_id: str = Field(foreign_key="accounts.id", max_length=64, index=True)
    count: int = Field(sa_type=BigInteger)
    amount: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    digits: str = Field(max_length=12)
    status: str = Field(default="vended", sa_type=String(16))
    redeemed: bool = False
    idempotency_key: str = Field(max_length=200, unique=True)
    request: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    vend_entry_id: int = Field(foreign_key="journal_entries.id", sa_type=BigId)
    release_entry_id: int | None = Field(
        default=None, foreign_key="journal_entries.id", sa_type=BigId
    )
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    released_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
