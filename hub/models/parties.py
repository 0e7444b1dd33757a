"""Who holds money: providers, customers and their accounts.

Account ids given by users match ``ID_PATTERN`` (no colon); accounts the hub opens itself carry
a colon (``provider:<id>``, ``clearing:<currency>``, ``platform:<currency>``), so they never clash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import StringConstraints
from sqlalchemy import JSON, BigInteger, Column, String
from sqlmodel import Field, SQLModel

from hub.models.types import AccountKind, Tier, UTCDateTime, utcnow

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
CURRENCY_PATTERN = r"^[A-Z]{3}$"
Currency = Annotated[str, StringConstraints(pattern=CURRENCY_PATTERN)]


class ProviderBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    tier: Tier = Field(sa_type=String(16))


class Provider(ProviderBase, table=True):
    __tablename__ = "providers"
    id: str = Field(primary_key=True, max_length=64)
    account_id: str = Field(foreign_key="accounts.id", max_length=80)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # what the provider pays the platform per kWh to be preferred by the ``priority`` policy
    # (a decimal in major units, as a tariff's prices; None: none)
    priority_fee: str | None = Field(default=None, max_length=32)


class AccountBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)


class Account(AccountBase, table=True):
    """A money holder. ``balance`` is a cache of the sum of its journal lines (minor units);
    ``floor`` is the lowest balance a checked debit may leave (NULL: no floor)."""

    __tablename__ = "accounts"
    id: str = Field(primary_key=True, max_length=80)
    kind: AccountKind = Field(sa_type=String(16))
    currency: str = Field(max_length=3)
    balance: int = Field(default=0, sa_type=BigInteger)
    floor: int | None = Field(default=0, sa_type=BigInteger, nullable=True)
    owner_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class CustomerBase(SQLModel):
    name: str = Field(min_length=1, max_length=200)
    protected: bool = False
    alternate_account_id: str | None = Field(default=None, foreign_key="accounts.id", max_length=80)


class Customer(CustomerBase, table=True):
    """A customer; its prepaid account has the same id as the customer."""

    __tablename__ = "customers"
    id: str = Field(primary_key=True, max_length=64)
    flags: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
