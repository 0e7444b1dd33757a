"""Operational tables: quarantined messages, API keys, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Text
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, Role, UTCDateTime, utcnow

QUARANTINE_PAYLOAD_MAX = 4096


class Quarantine(SQLModel, table=True):
    """A message that failed validation, with its reason; ``payload`` is truncated to
    ``QUARANTINE_PAYLOAD_MAX`` characters."""

    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    topic: str = Field(max_length=256)
    payload: str = Field(sa_type=Text)
    reason: str = Field(max_length=500)


class ApiKey(SQLModel, table=True):
    """An API key, stored as a hash; a customer key is bound to ``account_id``."""

    __tablename__ = "api_keys"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    key_hash: str = Field(max_length=128, unique=True)
    role: Role = Field(sa_type=String(16))
    account_id: str | None = Field(default=None, foreign_key="accounts.id", max_length=80)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    """Something that happened to a meter or account (disconnect, low_credit, tamper, ...);
    ``id`` increases, so it doubles as the SSE event id."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_kind_at", "kind", "at"),
        Index("ix_events_actor_id", "actor", "id"),
    )
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    kind: str = Field(max_length=32)
    meter_id: str | None = Field(default=None, max_length=64, index=True)
    reason: str = Field(default="", max_length=500)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    data: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    # Audited events (hub.audit): who or what caused it, "key:7", "gateway:gw-1", "job:NAME",
    # "provider:ID", "cli" or "hub:credit_control"; None for other events.
    actor: str | None = Field(default=None, max_length=96)
