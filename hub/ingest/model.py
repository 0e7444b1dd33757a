"""What a batch works on: table handles, the messages handed over, and the work gathered."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from hub.ingest.receipts import Settled
from hub.models import (
    Account,
    Customer,
    Event,
    GatewayEventSeen,
    GenerationMix,
    Meter,
    MeterCarry,
    PostedUsage,
    Provider,
    Quarantine,
    UsageMismatch,
    UsagePending,
    table,
)
from hub.models import Gateway as GatewayRow
from hub.models.ops import QUARANTINE_PAYLOAD_MAX
from hub.rating.payers import PayerPeriod, Sharer
from hub.rating.state import MeterState
from protocol import topics
from protocol.messages import (
    CreditRules,
    Status,
    TokenSetup,
    UsageRecord,
)
from protocol.messages import (
    Event as EventMsg,
)
from protocol.tariff import Tariff

T_METERS = table(Meter)
T_CARRY = table(MeterCarry)
T_PENDING = table(UsagePending)
T_POSTED = table(PostedUsage)
T_PROVIDERS = table(Provider)
T_ACCOUNTS = table(Account)
T_CUSTOMERS = table(Customer)
T_GATEWAYS = table(GatewayRow)
T_QUARANTINE = table(Quarantine)
T_EVENTS = table(Event)
T_SEEN = table(GatewayEventSeen)
T_MIX = table(GenerationMix)
T_MISMATCH = table(UsageMismatch)

CHUNK = 500
ONLINE_REFRESH = timedelta(seconds=60)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
RELAY_ON = frozenset({"on", "closed", "1", "true"})
RELAY_OFF = frozenset({"off", "open", "0", "false"})
# event kinds that report the relay on, off, or as ``data.state`` / ``data.relay``
RELAY_ON_KINDS = frozenset({"reconnect", "reconnected", "relay_on"})
RELAY_OFF_KINDS = frozenset({"disconnect", "disconnected", "relay_off"})
RELAY_STATE_KINDS = frozenset({"relay", "relay_change", "relay_changed"})


def relay_reported(kind: str, data: Mapping[str, Any] | None) -> str | None:
    """The relay state (``on``/``off``) an event of ``kind`` with ``data`` reports, if any."""
    if kind in RELAY_ON_KINDS:
        return "on"
    if kind in RELAY_OFF_KINDS:
        return "off"
    if kind in RELAY_STATE_KINDS:
        value = str((data or {}).get("state", (data or {}).get("relay", ""))).lower()
        return "on" if value in RELAY_ON else "off" if value in RELAY_OFF else None
    return None


@dataclass(frozen=True)
class Inbound:
    """One MQTT message as the network thread handed it over."""

    topic: str
    payload: bytes
    received_at: datetime
    mid: int = 0
    qos: int = 0
    generation: int = 0


@dataclass
class CreditInfo:
    """What the service needs to send a meter its credit state after a batch."""

    meter_id: str
    gateway_id: str
    command_key: str
    account_id: str
    balance: int
    tariff: Tariff
    state: MeterState
    flags: dict[str, Any] | None
    protected: bool
    alternate_available: int = 0
    tokens: TokenSetup | None = None  # read with ``balance`` (hub.tokens.store.setups)
    # a meter paid by several accounts: ``balance`` is their sum and these the rules it is sent
    # (hub.control.combined); None: the paying customer's own rules
    rules: CreditRules | None = None
    selection: dict[str, Any] | None = None  # the providers chosen now (hub.rating.pricing)


class Derived(NamedTuple):
    """A meter whose agent works its credit state out alone after the batch
    (``hub.ingest.credit_report``): no state is sent; what credit control needs of it. A
    named tuple, not a frozen dataclass: every meter of a batch sends one to the main process,
    and a slotted dataclass unpickles through ``dataclasses.fields`` (a quarter of the main
    process's CPU with a fleet of 30,000 meters, py-spy)."""

    meter_id: str
    balance: int
    flags: dict[str, Any] | None
    protected: bool


# What a settler reports of a meter whose balance a batch changed (``hub.ingest.credit_report``):
# the CreditInfo its state is built from; a Derived when its agent works the state out alone;
# None when, besides, it is at rest (``hub.control.rules.rest_floor``): nothing for credit control
# to do, and nothing of it to pass to the coordinator but its id.
CreditReport = CreditInfo | Derived | None


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    credit: dict[str, CreditReport] = field(default_factory=dict)
    pending: int = 0  # records held, in the whole table, after the batch
    states: dict[str, MeterState] = field(default_factory=dict)  # rating states written
    settled: Settled = field(default_factory=Settled)  # what the gateways get receipts for


@dataclass
class Rec:
    record: UsageRecord
    gateway: str
    received_at: datetime
    pending: bool  # already in usage_pending


class InvalidHeld(NamedTuple):
    """A held row that is no longer a valid record (held by a version that validated less)."""

    meter_id: str
    seq: int
    gateway_id: str
    text: str
    reason: str


@dataclass
class MeterCfg:
    id: str
    gateway_id: str
    customer_id: str | None
    tariff_id: str | None
    split_rule: dict[str, Any] | None
    online: bool
    relay: str
    last_seen_at: datetime | None
    sharers: list[Sharer] = field(default_factory=list)
    periods: tuple[PayerPeriod, ...] = ()  # its payer history (hub.rating.payers), if any
    problem: str | None = None


@dataclass
class Work:
    """Everything one batch writes, gathered before the single write."""

    now: datetime
    counts: Counter[str] = field(default_factory=Counter)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    usage: list[Rec] = field(default_factory=list)
    events: list[tuple[str, EventMsg]] = field(default_factory=list)
    statuses: dict[str, Status] = field(default_factory=dict)  # gateway -> newest status
    settled: Settled = field(default_factory=Settled)
    over_quota: set[str] = field(default_factory=set)  # gateways with events beyond their quota

    def quarantine_payload(self, topic: str, payload: bytes | str, reason: str) -> None:
        text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
        self.quarantine.append({"received_at": self.now, "topic": _text(topic[:256]),
                                "payload": _text(text[:QUARANTINE_PAYLOAD_MAX]),
                                "reason": _text(reason[:500])})  # fmt: skip
        self.counts["quarantined"] += 1


def _text(text: str) -> str:
    """``text`` without NUL characters, which PostgreSQL's text columns refuse."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def event_row(
    at: datetime, kind: str, meter: str | None, reason: str, data: dict[str, Any]
) -> dict[str, Any]:
    return {"kind": kind, "meter_id": meter, "reason": reason[:500], "at": at, "data": data}


def record_json(r: UsageRecord) -> str:
    return r.model_dump_json(exclude_none=True)


def usage_topic(rec: Rec) -> str:
    return topics.topic(rec.gateway, "usage")
