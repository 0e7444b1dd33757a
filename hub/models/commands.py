"""The durable command table: every command the hub decided to send a meter, and how far it got."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, String, Text, text
from sqlmodel import Field, SQLModel

from hub.models.types import UTCDateTime, utcnow


class CommandStatus(StrEnum):
    """``queued`` (decided, not yet acknowledged by the broker) → ``sent`` (PUBACK) →
    ``applied`` or ``rejected`` (the agent's ``command_ack`` / ``command_rejected``); or
    ``expired`` (its expiry passed first) or ``superseded`` (a newer command of the same kind
    for the meter replaced it before it was applied)."""

    QUEUED = "queued"
    SENT = "sent"
    APPLIED = "applied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"


OPEN = (CommandStatus.QUEUED, CommandStatus.SENT)
# ``OPEN`` as SQL, its values written out: the predicate of the partial indexes below, which a
# query says in the same words so that the planner can use them (migration 0920)
OPEN_SQL = "status IN ({})".format(", ".join(f"'{s.value}'" for s in OPEN))


class Command(SQLModel, table=True):
    """One signed command (``payload``, published as it is, byte for byte, on every try)."""

    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_open", "status", "next_try_at"),
        Index("ix_commands_meter", "meter_id", "created_at"),
        # the open commands only, by next try and by expiry (``hub.commands.store.has_work``)
        Index(
            "ix_commands_due",
            "next_try_at",
            postgresql_where=text(OPEN_SQL),
            sqlite_where=text(OPEN_SQL),
        ),
        Index(
            "ix_commands_expiring",
            "expires_at",
            postgresql_where=text(OPEN_SQL),
            sqlite_where=text(OPEN_SQL),
        ),
    )
    id: str = Field(primary_key=True, max_length=64)
    meter_id: str = Field(max_length=64)
    gateway_id: str = Field(max_length=64, index=True)
    action: str = Field(max_length=32)
    grp: str = Field(max_length=16)  # commands of one group supersede each other per meter
    payload: str = Field(sa_type=Text)
    status: CommandStatus = Field(default=CommandStatus.QUEUED, sa_type=String(16))
    detail: str = Field(default="", max_length=500)
    attempts: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    next_try_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class CreditBaseline(SQLModel, table=True):
    """What a meter's agent works its balance out from (``hub.commands.baseline``): its chain's
    ``points`` (JSON [[seq, balance], ...], the last its end) and the credit state that blessed
    it (``command_id``, ``digest``, ``sent_at``; ``""`` and NULL: none yet)."""

    __tablename__ = "credit_baselines"
    meter_id: str = Field(primary_key=True, max_length=64)
    points: str = Field(sa_type=Text)
    digest: str = Field(default="", max_length=64)
    command_id: str = Field(default="", max_length=64, index=True)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
