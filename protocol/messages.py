"""MQTT payloads (contract section 4), versioned JSON validated with pydantic.

Every payload carries ``"v": 1``. Usage and events travel in batches so that a gateway replaying
its outbox after an outage sends few large messages rather than many small ones.
"""

import json
from datetime import date, datetime, time
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from protocol.errors import ProtocolError
from protocol.tariff import ProviderId, Tariff

MAX_PAYLOAD = 256 * 1024
MAX_BATCH = 1000
MAX_REGISTER = 10**15
MAX_MONEY = 10**13

MeterId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
MessageId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
EventKind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Money = Annotated[int, Field(ge=-MAX_MONEY, le=MAX_MONEY)]
Scalar = str | int | float | bool | None

Action = Literal["disconnect", "reconnect", "credit", "prompt"]
ACTIONS: tuple[str, ...] = ("disconnect", "reconnect", "credit", "prompt")


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UsageRecord(Message):
    """Energy a meter used in one interval: its cumulative register at both ends.

    ``shares`` are the agent's own per-provider charges in minor units, for local enforcement and
    the hub's cross-check; the hub re-rates every record itself.
    """

    meter: MeterId
    seq: int = Field(ge=1, le=2**53)
    start: AwareDatetime
    end: AwareDatetime
    import_start: int = Field(ge=0, le=MAX_REGISTER)
    import_end: int = Field(ge=0, le=MAX_REGISTER)
    shares: dict[ProviderId, Annotated[int, Field(ge=0, le=MAX_MONEY)]] = Field(
        default_factory=dict, max_length=32
    )
    tariff: str | None = None
    tariff_version: int | None = None
    merged: int = Field(default=1, ge=1)
    # The gateway outbox that numbered this record (``protocol.receipts``): a receipt confirms
    # seqs of one epoch only, so a gateway whose store was lost cannot be told to forget the
    # records it numbers anew.
    epoch: Annotated[str, Field(pattern=r"^[0-9a-f]{8,32}$")] | None = None

    @model_validator(mode="after")
    def _forward(self) -> Self:
        if self.end < self.start:
            raise ValueError("end is before start")
        if self.import_end < self.import_start:
            raise ValueError("import_end is below import_start")
        return self

    @property
    def energy(self) -> int:
        return self.import_end - self.import_start


class UsageMessage(Message):
    v: Literal[1] = 1
    records: tuple[UsageRecord, ...] = Field(min_length=1, max_length=MAX_BATCH)


class Event(Message):
    """Something that happened at a gateway: relay change, low credit, fault, tamper, ack."""

    id: MessageId
    kind: EventKind
    at: AwareDatetime
    meter: MeterId | None = None
    reason: str = Field(default="", max_length=500)
    data: dict[Annotated[str, Field(max_length=64)], Scalar] = Field(
        default_factory=dict, max_length=32
    )


class EventMessage(Message):
    v: Literal[1] = 1
    events: tuple[Event, ...] = Field(min_length=1, max_length=MAX_BATCH)


class Status(Message):
    model_config = ConfigDict(frozen=True, extra="allow")

    v: Literal[1] = 1
    state: Literal["online", "offline"]
    at: AwareDatetime | None = None


class FriendlyWindow(Message):
    """No automatic cut-off on these weekdays (0 = Monday) from ``start`` to ``end`` (may wrap)."""

    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    start: time
    end: time


class CreditRules(Message):
    low_credit: tuple[Money, ...] = ()
    reconnect_above: Money = 0
    emergency_credit: Annotated[int, Field(ge=0, le=MAX_MONEY)] = 0
    # What the hub will draw from the customer's alternate account (claim 21) before any
    # cut-off: the agent lets the balance run this far below zero (plus emergency credit).
    alternate_available: Annotated[int, Field(ge=0, le=MAX_MONEY)] = 0
    grace_s: Annotated[int, Field(ge=0, le=30 * 86400)] = 0
    friendly: tuple[FriendlyWindow, ...] = ()
    holidays: tuple[date, ...] = ()
    protected: bool = False


class CreditState(Message):
    """What the hub tells a gateway about one meter's credit: enough to enforce it offline.

    ``balance`` already includes every usage record up to ``as_of_seq``; the agent subtracts its
    own charges for later records. ``carry`` is the meter's rounding remainder at ``as_of_seq``.
    """

    balance: Money
    as_of_seq: int = Field(ge=0, le=2**53)
    tariff: Tariff
    rules: CreditRules = CreditRules()
    carry: dict[ProviderId, str] = Field(default_factory=dict, max_length=32)


class Command(Message):
    """A signed instruction from the hub to one meter's gateway."""

    v: Literal[1] = 1
    id: MessageId
    meter: MeterId
    action: str = Field(max_length=32)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    reason: str = Field(default="", max_length=500)
    params: dict[str, Any] = Field(default_factory=dict)
    sig: str = Field(pattern=r"^[0-9a-f]{64}$")


M = TypeVar("M", bound=BaseModel)


def load_json(payload: bytes) -> Any:
    """Parse a payload, refusing oversized or non-JSON input with a one-line reason."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    try:
        return json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc


def parse(payload: bytes, model: type[M]) -> M:
    """A validated message of type ``model``; ProtocolError naming the first bad field otherwise."""
    return validate(load_json(payload), model)


def validate(data: Any, model: type[M]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "payload"
        raise ProtocolError(f"{where}: {err['msg']}") from exc


def dump(message: BaseModel) -> bytes:
    return message.model_dump_json(exclude_none=True).encode()


def utc(moment: datetime) -> str:
    """An aware datetime as compact ISO 8601 text, for payloads built by hand."""
    return moment.isoformat()
