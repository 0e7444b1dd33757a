"""MQTT payloads (contract section 4), versioned JSON validated with pydantic.

Every payload carries ``"v": 1``. Usage and events travel in batches so that a gateway replaying
its outbox after an outage sends few large messages rather than many small ones.

Bounds that keep every accepted value inside what the code behind it handles: each instant lies
in [``MIN_INSTANT``, ``MAX_INSTANT``) (a year-1 or year-9999 time with an offset cannot even be
converted to UTC), a usage interval spans at most ``MAX_SPAN`` (rating cost grows with the
span), and an integer literal has at most ``MAX_INT_DIGITS`` digits, a non-finite number is
refused (``load_json``).
"""

import json
import math
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from protocol.errors import ProtocolError
from protocol.tariff import ProviderId, Tariff

MAX_PAYLOAD = 256 * 1024
MAX_BATCH = 1000
MAX_REGISTER = 10**15
MAX_MONEY = 10**13
MAX_SEQ = 2**53
MIN_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_INSTANT = datetime(2200, 1, 1, tzinfo=UTC)
MAX_SPAN = timedelta(days=31)
MAX_TOKEN_LIST = 256
MAX_INT_DIGITS = 20  # every integer field is far below 10**20; Python refuses > 4300 digits
MAX_CURRENT_A = 100_000.0  # far above any meter's rating (a CT-connected meter's primary)


_RANGE = f"from {MIN_INSTANT:%Y-%m-%d} to before {MAX_INSTANT:%Y-%m-%d} UTC"


_INSTANT = f"ISO 8601 with an offset, {_RANGE}"
# The range is checked by pydantic's core, which compares the instant with its offset (a
# year-1 or year-9999 time with an offset is refused, never converted): a Python validator
# cost about 0.6 us an instant, six times the core's check (docs/scaling.md 2.3).
Instant = Annotated[AwareDatetime, Field(ge=MIN_INSTANT, lt=MAX_INSTANT, description=_INSTANT)]
MeterId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
MessageId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
# A gateway store's epoch: random hex made with the agent's SQLite file (its outbox). Records,
# status, receipts and commands name it, so a gateway whose store was lost and that numbers its
# records from 1 again is told apart from the one before (docs/protocol.md, "Epochs").
EpochId = Annotated[str, Field(pattern=r"^[0-9a-f]{8,32}$")]
EventKind = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
Money = Annotated[int, Field(ge=-MAX_MONEY, le=MAX_MONEY)]
Scalar = Annotated[str, Field(max_length=500)] | int | float | bool | None

Action = Literal["disconnect", "reconnect", "credit", "prompt", "resume", "rotate"]
ACTIONS: tuple[str, ...] = ("disconnect", "reconnect", "credit", "prompt", "resume", "rotate")
# A newer command of a group supersedes an older one for the same meter (hub and agent alike).
COMMAND_GROUPS = {
    "disconnect": "relay",
    "reconnect": "relay",
    "credit": "credit",
    "prompt": "prompt",
    "resume": "resume",
    "rotate": "rotate",
}


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UsageRecord(Message):
    """Energy a meter used in one interval: its cumulative register at both ends.

    ``shares`` are the agent's own per-provider charges in minor units, for local enforcement and
    the hub's cross-check; the hub re-rates every record itself.
    """

    meter: MeterId
    seq: int = Field(ge=1, le=MAX_SEQ)
    start: Instant
    end: Instant = Field(description=f"{_INSTANT}; at or after start, at most 31 days after it")
    import_start: int = Field(ge=0, le=MAX_REGISTER)
    import_end: int = Field(ge=0, le=MAX_REGISTER)
    shares: dict[ProviderId, Annotated[int, Field(ge=0, le=MAX_MONEY)]] = Field(
        default_factory=dict, max_length=32
    )
    tariff: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    tariff_version: int | None = Field(default=None, ge=1, le=MAX_SEQ)
    merged: int = Field(default=1, ge=1, le=MAX_SEQ, description="at most seq")
    # The gateway outbox that numbered this record (``protocol.receipts``): a receipt confirms
    # seqs of one epoch only, so a gateway whose store was lost cannot be told to forget the
    # records it numbers anew.
    epoch: EpochId | None = None
    # Extension (issue 19, docs/protocol.md "Usage records"): the mean of the current readings
    # the agent took in the interval, in amperes (the largest phase of a polyphase meter);
    # absent when the meter's map has no current register, and from older agents.
    current_mean_a: float | None = Field(
        default=None,
        ge=0,
        le=MAX_CURRENT_A,
        strict=True,
        allow_inf_nan=False,
        description="extension: the mean current (A) of the interval's readings",
    )

    @model_validator(mode="after")
    def _forward(self) -> Self:
        if self.end < self.start:
            raise ValueError("end is before start")
        if self.end - self.start > MAX_SPAN:
            raise ValueError(f"interval of {self.end - self.start} exceeds {MAX_SPAN.days} days")
        if self.merged > self.seq:
            raise ValueError("merged exceeds seq")
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
    at: Instant
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
    at: Instant | None = None
    epoch: EpochId | None = None  # the gateway store's epoch (an online status carries it)


Count = Annotated[int, Field(ge=0, le=MAX_SEQ)]


class BusHealth(Message):
    """One meter's Modbus counters since the agent started, as its online status reports them
    under ``meters.<id>.bus`` (docs/protocol.md, "Status"): requests sent, failed requests by
    kind (no or garbled answer incl. CRC errors, Modbus exception, connection, bad frame),
    polls, polls that failed after their retries, polls skipped while backing off."""

    requests: Count = 0
    errors: Count = 0
    timeouts: Count = 0
    exceptions: Count = 0
    connection: Count = 0
    frame: Count = 0
    polls: Count = 0
    failed_polls: Count = 0
    skipped: Count = 0
    state: Literal["ok", "failing", "starting"] = "starting"
    last_error: Annotated[str, Field(max_length=200)] = ""


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


class TokenSetup(Message):
    """A meter's offline top-up tokens (``protocol.tokens``, docs/tokens.md): its secret sealed
    with the gateway's command key (``protocol.tokens.seal``), the counts of its tokens the hub
    has settled (their money is in ``balance``: the agent stops adding them) and of those it
    cancelled (refunded: the agent refuses them), each the newest ``MAX_TOKEN_LIST``."""

    sealed: str = Field(pattern=r"^[0-9a-f]{40}$")
    settled: tuple[Annotated[int, Field(ge=0, le=MAX_SEQ)], ...] = Field(
        default=(), max_length=MAX_TOKEN_LIST
    )
    cancelled: tuple[Annotated[int, Field(ge=0, le=MAX_SEQ)], ...] = Field(
        default=(), max_length=MAX_TOKEN_LIST
    )


class ProviderChoice(Message):
    """The providers a selection policy chose for a meter (contract section 5, ``selection``):
    per tier the provider (``providers``), why (``by``: ``sla``, ``cost`` or ``priority``) and
    the candidate tariff each came from (``tariffs``: provider -> ``id@version``). The
    credit state's ``tariff`` is then those providers' components, which the agent prices
    with; the hub chooses again per interval and records a differing price as a mismatch."""

    policy: Literal["sla", "least_cost", "priority"]
    providers: dict[str, ProviderId] = Field(default_factory=dict, max_length=16)
    by: dict[str, str] = Field(default_factory=dict, max_length=16)
    tariffs: dict[ProviderId, str] = Field(default_factory=dict, max_length=32)


class CreditState(Message):
    """What the hub tells a gateway about one meter's credit: enough to enforce it offline.

    ``balance`` already includes every usage record up to ``as_of_seq``; the agent subtracts its
    own charges for later records. ``carry`` is the meter's rounding remainder at ``as_of_seq``.
    ``tokens``: the meter's offline top-up tokens (None: not set up); ``balance`` includes the
    tokens listed as settled there and none of the others, so the agent adds the amount of each
    token it redeemed and the state does not list. ``selection``: for a meter priced by a
    provider selection, the choice the ``tariff`` amounts to (:class:`ProviderChoice`).
    """

    balance: Money
    as_of_seq: int = Field(ge=0, le=MAX_SEQ)
    tariff: Tariff
    rules: CreditRules = CreditRules()
    carry: dict[ProviderId, str] = Field(default_factory=dict, max_length=32)
    tokens: TokenSetup | None = None
    selection: ProviderChoice | None = None


class ResumePoint(Message):
    """Where a gateway that started over resumes one meter's seqs (a ``resume`` command's
    params): ``seq`` is the highest seq the hub holds for the meter from before; ``import_end``
    and ``end`` are those of the meter's newest posted record (None if none was posted): where
    the gateway's next record must start, so that no energy is skipped."""

    seq: int = Field(ge=1, le=MAX_SEQ)
    import_end: int | None = Field(default=None, ge=0, le=MAX_REGISTER)
    end: Instant | None = None


class Rotation(Message):
    """New credentials for a gateway (a ``rotate`` command's params, signed with the key it
    replaces): the command key the hub signs with once the gateway has acknowledged this, and
    the MQTT password for the gateway's next connection (None: unchanged)."""

    command_key: str = Field(pattern=r"^(?:[0-9a-fA-F]{2}){16,64}$")
    mqtt_password: str | None = Field(default=None, min_length=16, max_length=128)


class Command(Message):
    """A signed instruction from the hub to one meter's gateway. ``epoch``: the gateway store
    the hub addressed it to (the agent refuses it from any other: a command captured before
    the gateway's store was lost stays refused after it)."""

    v: Literal[1] = 1
    id: MessageId
    meter: MeterId
    action: str = Field(max_length=32)
    issued_at: Instant
    expires_at: Instant
    reason: str = Field(default="", max_length=500)
    params: dict[str, Any] = Field(default_factory=dict)
    epoch: EpochId | None = None
    sig: str = Field(pattern=r"^[0-9a-f]{64}$")


M = TypeVar("M", bound=BaseModel)


_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def load_json(payload: bytes) -> Any:
    """Parse a payload, refusing oversized or non-JSON input with a one-line reason: also an
    integer of more than ``MAX_INT_DIGITS`` digits (beyond 4,300 Python itself refuses it, with
    a plain ValueError), NaN, Infinity or a number too large for a float, a NUL character in a
    string, and a string with a lone surrogate (which has no UTF-8 form to sign or store)."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    if b"\\u0000" in payload:  # the only way to a NUL in a string; PostgreSQL refuses them
        raise ProtocolError("a string with a NUL character (\\u0000)")
    try:
        data = json.loads(payload, parse_int=_int, parse_float=_float, parse_constant=_no_constant)
    except ProtocolError:
        raise
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError included
        raise ProtocolError(f"not JSON: {exc}") from exc
    if _SURROGATE.search(payload):  # only an escape makes one; then check the strings
        try:
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError as exc:
            raise ProtocolError("a string with a lone surrogate (not Unicode text)") from exc
    return data


def _int(text: str) -> int:
    digits = len(text) - text.startswith("-")
    if digits > MAX_INT_DIGITS:
        raise ProtocolError(f"integer of {digits} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ProtocolError(f"number {text[:20]} out of range")
    return value


def _no_constant(text: str) -> Any:
    raise ProtocolError(f"{text} is not a number JSON allows")


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
