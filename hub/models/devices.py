"""Gateways, meters, who shares a meter, and each meter's rating carry state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, String, Text
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, Relay, Service, UTCDateTime, utcnow


class GatewayPublic(SQLModel):
    id: str
    mqtt_username: str


class Gateway(SQLModel, table=True):
    """A gateway (edge agent). ``command_key`` is hex; the MQTT password is stored hashed.
    ``epoch``: the epoch of the gateway's store as last heard (``hub.ingest.restarts``); every
    command is bound to it when published. ``next_*``: credentials being rotated."""

    __tablename__ = "gateways"
    id: str = Field(primary_key=True, max_length=64)
    command_key: str = Field(max_length=128)
    mqtt_username: str = Field(max_length=128, unique=True)
    mqtt_password_hash: str = Field(max_length=256)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    epoch: str | None = Field(default=None, max_length=32)
    # A rotation the gateway has not acknowledged yet (POST /gateways/{id}/rotate): the hub
    # signs with ``command_key`` until then (hub.commands.store.adopt_rotation).
    next_command_key: str | None = Field(default=None, max_length=128)
    next_mqtt_password_hash: str | None = Field(default=None, max_length=256)


class GatewayEpoch(SQLModel, table=True):
    """An epoch a gateway's store has had (``hub.ingest.restarts``). ``resume``: for a store
    that started over, per meter the highest seq the hub held from before: the store's records
    of this epoch at or below it were numbered before the gateway learned where to resume."""

    __tablename__ = "gateway_epochs"
    gateway_id: str = Field(primary_key=True, max_length=64)
    epoch: str = Field(primary_key=True, max_length=32)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    resume: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Meter(SQLModel, table=True):
    """A meter. ``customer_id`` pays for it unless ``meter_customers`` rows share it;
    ``last_seq``/``import_wh`` are the newest record seen (register in the base unit)."""

    __tablename__ = "meters"
    id: str = Field(primary_key=True, max_length=64)
    gateway_id: str = Field(foreign_key="gateways.id", max_length=64, index=True)
    customer_id: str | None = Field(default=None, foreign_key="customers.id", max_length=64)
    tariff_id: str | None = Field(default=None, foreign_key="tariffs.id", max_length=64)
    service: Service = Field(default=Service.ELECTRICITY, sa_type=String(16))
    timezone: str = Field(default="UTC", max_length=64)
    last_seq: int | None = Field(default=None, sa_type=BigInteger)
    import_wh: int | None = Field(default=None, sa_type=BigInteger)
    relay: Relay = Field(default=Relay.UNKNOWN, sa_type=String(16))
    online: bool = False
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    split_rule: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MeterCustomer(SQLModel, table=True):
    """One user of a shared meter: ``weight`` is its share (any positive integer scale);
    ``contributes`` false means it uses the meter but pays nothing."""

    __tablename__ = "meter_customers"
    meter_id: str = Field(foreign_key="meters.id", primary_key=True, max_length=64)
    customer_id: str = Field(foreign_key="customers.id", primary_key=True, max_length=64)
    weight: int = Field(default=1, sa_type=BigInteger)
    contributes: bool = True


class MeterPayer(SQLModel, table=True):
    """Who paid a meter from ``valid_from`` on (``PATCH /meters/{id}``, hub.services.meters):
    its customer and, for a shared meter, its sharers (``[{"customer", "weight"}]``, null for
    none). An interval starting at or after ``valid_from`` (and before the next row's) is
    charged to these payers; a meter without rows is paid as ``meters.customer_id`` and its
    ``meter_customers`` say."""

    __tablename__ = "meter_payers"
    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    meter_id: str = Field(foreign_key="meters.id", max_length=64, index=True)
    valid_from: datetime = Field(sa_type=UTCDateTime)
    customer_id: str = Field(foreign_key="customers.id", max_length=64)
    sharers: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MeterCarry(SQLModel, table=True):
    """The rating layer's rounding remainders for a meter, as opaque text."""

    __tablename__ = "meter_carry"
    meter_id: str = Field(foreign_key="meters.id", primary_key=True, max_length=64)
    state: str = Field(sa_type=Text)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
