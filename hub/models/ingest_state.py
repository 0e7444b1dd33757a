"""Tables the ingest side keeps besides the ledger's: records held for a seq gap, share
mismatches with the agent, gateway event ids seen, generation mixes (claim 15) and each meter's
bus health as its gateway last reported it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Text
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class UsagePending(SQLModel, table=True):
    """A valid usage record held until the records before it (by seq) arrive; ``record`` is
    its JSON. Released in seq order, or after the hold time with the gap skipped."""

    __tablename__ = "usage_pending"
    meter_id: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True, sa_type=BigInteger)
    gateway_id: str = Field(max_length=64)
    record: str = Field(sa_type=Text)
    received_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class UsageMismatch(SQLModel, table=True):
    """The agent's per-provider shares for a record differ from the hub's (no money effect)."""

    __tablename__ = "usage_mismatches"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    meter_id: str = Field(max_length=64, index=True)
    seq: int = Field(sa_type=BigInteger)
    hub_shares: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    agent_shares: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class GatewayEventSeen(SQLModel, table=True):
    """A gateway event id already stored (events are deduplicated by gateway and id)."""

    __tablename__ = "gateway_events_seen"
    gateway_id: str = Field(primary_key=True, max_length=64)
    event_id: str = Field(primary_key=True, max_length=64)
    event_row_id: int | None = Field(default=None, sa_type=BigInteger)


class GenerationMix(SQLModel, table=True):
    """Measured delivery by generator for a pooled provider over ``[start, end)``: that
    provider's amount is split among the generators in these proportions. ``meter_id`` None
    applies to every meter whose tariff names the pool."""

    __tablename__ = "generation_mix"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    meter_id: str | None = Field(default=None, max_length=64, index=True)
    pool: str = Field(max_length=64)
    start: datetime = Field(sa_type=UTCDateTime)
    end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    measured: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))


class MeterBus(SQLModel, table=True):
    """A meter's Modbus counters and state from its gateway's newest online status
    (``protocol.messages.BusHealth``): counted by the agent since it started."""

    __tablename__ = "meter_bus"
    meter_id: str = Field(foreign_key="meters.id", primary_key=True, max_length=64)
    reported_at: datetime = Field(sa_type=UTCDateTime)
    requests: int = Field(default=0, sa_type=BigInteger)
    errors: int = Field(default=0, sa_type=BigInteger)
    timeouts: int = Field(default=0, sa_type=BigInteger)
    exceptions: int = Field(default=0, sa_type=BigInteger)
    connection: int = Field(default=0, sa_type=BigInteger)
    frame: int = Field(default=0, sa_type=BigInteger)
    polls: int = Field(default=0, sa_type=BigInteger)
    failed_polls: int = Field(default=0, sa_type=BigInteger)
    skipped: int = Field(default=0, sa_type=BigInteger)
    state: str = Field(default="starting", max_length=16)
    last_error: str = Field(default="", max_length=200)
