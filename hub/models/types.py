"""Column types and vocabularies shared by the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, Integer
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

# Deterministic constraint names, so migrations can name what they alter on every backend.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT everywhere, except that SQLite only auto-numbers an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant: stored naive in UTC on every backend, returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Tier(StrEnum):
    GENERATION = "generation"
    TRANSMISSION = "transmission"
    DISTRIBUTION = "distribution"
    RETAIL = "retail"
    PLATFORM = "platform"


class AccountKind(StrEnum):
    CUSTOMER = "customer"
    ALTERNATE = "alternate"
    SPONSOR = "sponsor"
    PROVIDER = "provider"
    PLATFORM = "platform"
    CLEARING = "clearing"
    EMERGENCY = "emergency"


class Service(StrEnum):
    ELECTRICITY = "electricity"
    WATER = "water"
    GAS = "gas"


class Relay(StrEnum):
    ON = "on"
    OFF = "off"
    UNKNOWN = "unknown"


class EntryKind(StrEnum):
    USAGE = "usage"
    TOPUP = "topup"
    STANDING = "standing"
    SUBSCRIPTION = "subscription"
    ALTERNATE_DRAW = "alternate_draw"
    EMERGENCY = "emergency"
    TRANSFER = "transfer"
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"
    TOKEN = "token"  # offline top-up tokens: vended, settled or cancelled (hub.tokens)
    ALLOCATION = "allocation"  # a payment split among the providers (hub.payments)


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    CUSTOMER = "customer"
    PROVIDER = "provider"  # a tier's system (contract section 6): bound to its provider account
    BILLPAY = "billpay"  # a bill-payment network: bound to its account billpay:<network>
