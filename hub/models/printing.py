"""Print sites and paper routes (issue 18 item 5, contract section 6 "Paper routing"): where
paper bills are printed and mailed from, and each paper bill's route with its reason."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class PrintSite(SQLModel, table=True):
    """A print and mail site: its price per piece (minor units of ``currency``) and how many
    bills it takes per day."""

    __tablename__ = "print_sites"
    id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    per_piece: int = Field(sa_type=BigInteger)
    currency: str = Field(max_length=3)
    daily_capacity: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class PrintZone(SQLModel, table=True):
    """A site mails to postal codes starting with ``prefix`` (normalised: upper case, no spaces
    or hyphens) at ``transport`` (minor units) per piece and ``co2_g`` grams of CO2."""

    __tablename__ = "print_zones"
    site_id: str = Field(foreign_key="print_sites.id", primary_key=True, max_length=64)
    prefix: str = Field(primary_key=True, max_length=16)
    transport: int = Field(sa_type=BigInteger)
    co2_g: int = Field(sa_type=BigInteger)


class PaperRoute(SQLModel, table=True):
    """A paper bill's route, written once in the billing run that issued the bill: the site
    chosen (None: no site could take it, reported as a ``paper_unroutable`` event), the day it
    is printed, and every candidate's score (``candidates``, money in minor units)."""

    __tablename__ = "paper_routes"
    __table_args__ = (Index("ix_paper_routes_site_day", "site_id", "day"),)
    bill_id: int = Field(foreign_key="bills.id", primary_key=True, sa_type=BigId)
    site_id: str | None = Field(default=None, foreign_key="print_sites.id", max_length=64)
    day: date
    postal_code: str = Field(max_length=16)
    cost: int | None = Field(default=None, sa_type=BigInteger)
    co2_g: int | None = Field(default=None, sa_type=BigInteger)
    reason: str = Field(max_length=500)
    candidates: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    routed_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


__all__ = ["PaperRoute", "PrintSite", "PrintZone"]
