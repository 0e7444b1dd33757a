"""Request and response bodies of the HTTP API (field names as in CONTRACT.md section 5).

Request bodies forbid unknown fields (422 naming the field). Money is a decimal string in
major units; the exact decimals allowed depend on the currency and are checked by the route
(``protocol.money.to_minor``), so ``"12.505"`` USD is refused with ``loc: [body, amount]``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from hub.control.rules import CustomerRules
from hub.models import ID_PATTERN, Relay, Service, Tier
from protocol.tariff import Component, Tariff

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
MoneyIn = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9]{1,13}(\.[0-9]{1,12})?$"),
    Field(description='decimal string in major units, e.g. "12.50"', examples=["12.50"]),
]
Money = Annotated[str, Field(description="decimal string in major units", examples=["12.50"])]

MAX_ID = 2**63 - 1
"""The largest row id (BIGINT; SQLite's INTEGER): the upper bound of every id a client sends."""


def in_utc(value: datetime) -> datetime:
    """The instant in UTC (a naive one is taken as UTC). Every instant a client sends passes
    here: one that UTC cannot represent (``0001-01-01T00:00+01:00``) is a ValueError (422)."""
    try:
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    except OverflowError:
        raise ValueError("out of range: years 1 to 9999 in UTC") from None


Instant = Annotated[datetime, AfterValidator(in_utc)]
"""An ISO 8601 instant; without a zone it is UTC."""
AwareInstant = Annotated[AwareDatetime, AfterValidator(in_utc)]
"""An ISO 8601 instant with its zone (``Z`` or ``+hh:mm``)."""


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderIn(Body):
    id: Id
    name: Name
    tier: Tier


class ProviderOut(BaseModel):
    id: str
    name: str
    tier: Tier
    account: str
    balance: Money
    currency: str


class TariffIn(Tariff):
    """``protocol.tariff.Tariff`` (id, currency, timezone, components) plus a display name and
    the instant version 1 takes effect (default: now); ``offer``: the tariff may be offered to
    customers whose past usage would have cost less on it (``hub.insights``)."""

    name: Annotated[str, StringConstraints(max_length=200)] = ""
    valid_from: AwareInstant | None = None
    offer: bool = False


class TariffVersionIn(Body):
    """A new version of an existing tariff: the whole definition again, and when it starts
    (default: now; never before the latest version's start)."""

    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] = "USD"
    timezone: str = "UTC"
    components: Annotated[tuple[Component, ...], Field(min_length=1, max_length=32)]
    valid_from: AwareInstant | None = None


class TariffOut(BaseModel):
    id: str
    name: str
    currency: str
    version: int
    valid_from: datetime
    components: list[dict[str, Any]]
    offer: bool = False


class CustomerIn(Body):
    id: Id
    name: Name
    protected: bool = False
    alternate_account: Id | None = None
    # Credit control (hub/control/README.md): CreditRules fields plus alternate_draw,
    # alternate_limit, debt_recovery_share; amounts in minor units.
    credit_rules: CustomerRules | None = None
    # contract section 6: a postpaid customer consumes against a receivable, billed monthly
    billing: Literal["prepaid", "postpaid"] = "prepaid"


class CustomerPatch(Body):
    """The fields to change (``PATCH /customers/{id}``); ``alternate_account: null`` removes
    it, ``credit_rules`` replaces the stored rules whole."""

    name: Name | None = None
    protected: bool | None = None
    alternate_account: Id | None = None
    credit_rules: CustomerRules | None = None
    billing: Literal["prepaid", "postpaid"] | None = None

    @model_validator(mode="after")
    def _not_null(self) -> CustomerPatch:
        for name in ("name", "protected", "credit_rules", "billing"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} may not be null")
        return self

    def given(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class ChangeOut(BaseModel):
    id: int
    at: datetime
    key_id: int | None
    reason: str
    changes: dict[str, Any]


class CustomerOut(BaseModel):
    id: str
    name: str
    protected: bool
    alternate_account: str | None
    account: str
    balance: Money
    currency: str
    credit_rules: dict[str, Any] = Field(default_factory=dict)
    billing: str = "prepaid"


class AccountIn(Body):
    id: Id
    name: Name
    kind: Literal["alternate", "sponsor"] = "alternate"


class AccountOut(BaseModel):
    id: str
    balance: Money
    currency: str
    name: str
    kind: str


class GatewayIn(Body):
    id: Id


class GatewayCreated(BaseModel):
    """The secrets are shown here once; the hub keeps only the key and a password hash."""

    id: str
    command_key: str
    mqtt_username: str
    mqtt_password: str


class SharerIn(Body):
    """One user of a shared meter: ``weight`` its share (0: uses it, pays nothing)."""

    customer: Id
    weight: Annotated[int, Field(ge=0, le=1_000_000)]


Sharers = Annotated[list[SharerIn], Field(min_length=1, max_length=100)]


def sharer_pairs(sharers: list[SharerIn] | None) -> list[tuple[str, int]] | None:
    return None if sharers is None else [(s.customer, s.weight) for s in sharers]


class MeterIn(Body):
    id: Id
    gateway: Id
    customer: Id
    tariff: Id
    service: Service = Service.ELECTRICITY
    # the register map the gateway reads it with (hardware/registers), checked against service
    model: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")] | None = None
    # several users paying the meter's fee by weight (hub.services.meters)
    sharers: Sharers | None = None


class MeterPatch(Body):
    """``PATCH /meters/{id}``: the meter's ``customer`` and ``sharers`` (null: none), from
    ``from`` (default now; hub.services.meters)."""

    customer: Id | None = None
    sharers: Sharers | None = None
    from_: Instant | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _not_null(self) -> MeterPatch:
        if "customer" in self.model_fields_set and self.customer is None:
            raise ValueError("customer may not be null")
        return self

    def given(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "customer" in self.model_fields_set:
            out["customer"] = self.customer
        if "sharers" in self.model_fields_set:
            out["sharers"] = sharer_pairs(self.sharers)
        if self.from_ is not None:
            out["from"] = self.from_
        return out


Share = Annotated[str, StringConstraints(pattern=r"^(0|1)(\.[0-9]{1,12})?$")]


class SupplyMixIn(Body):
    """``POST /meters/{id}/supply-mix``: each generation provider's measured share (decimal
    strings summing to exactly 1) in ``[from, to)``."""

    from_: Instant = Field(alias="from")
    to: Instant | None = None
    shares: Annotated[dict[Id, Share], Field(min_length=1, max_length=32)]


class SupplyMixOut(BaseModel):
    id: int
    meter: str
    pool: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime | None
    shares: dict[str, str]


class BusOut(BaseModel):
    """The meter's Modbus counters since its agent started and its poll state, from the
    gateway's newest online status (``protocol.messages.BusHealth``)."""

    reported_at: datetime
    requests: int
    errors: int
    timeouts: int
    exceptions: int
    connection: int
    frame: int
    polls: int
    failed_polls: int
    skipped: int
    state: str
    last_error: str


class MeterOut(BaseModel):
    id: str
    gateway: str
    relay: Relay
    online: bool
    last_seq: int | None
    import_wh: int | None
    customer: str | None = None
    tariff: str | None = None
    service: Service = Service.ELECTRICITY
    last_seen_at: datetime | None = None
    balance: Money | None = None
    # the status of the meter's newest disconnect/reconnect command when it is not yet applied
    # (queued, sent, rejected, expired): the relay may not be what the operator asked for
    pending_command: str | None = None
    bus: BusOut | None = None  # GET /meters/{id} only: the gateway's newest bus report


class TopupIn(Body):
    amount: MoneyIn
    reference: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None


class TopupOut(BaseModel):
    id: int
    amount: Money
    balance: Money
    currency: str = "USD"
    account: str = ""
    payment: int | None = None  # its payment record: GET /payments/{id}


class CommandIn(Body):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class RotationOut(BaseModel):
    """The new secrets, shown once; the hub signs with the old key until the gateway
    acknowledges ``command_id``."""

    id: str
    command_id: str
    command_key: str
    mqtt_username: str
    mqtt_password: str
    status: str = "queued"


class CommandOut(BaseModel):
    """An operator command as accepted: ``queued`` in the durable command table."""

    command_id: str
    meter: str
    action: str
    status: str


CommandStatusName = Literal["queued", "sent", "applied", "rejected", "expired", "superseded"]


class CommandStep(BaseModel):
    status: CommandStatusName
    at: datetime


class CommandState(BaseModel):
    """A command to a meter and how far it got: ``history`` lists each state reached, in order."""

    id: str
    action: str
    status: CommandStatusName
    detail: str
    attempts: int
    created_at: datetime
    expires_at: datetime
    history: list[CommandStep]


class FleetSummary(BaseModel):
    meters: int
    online: int
    off: int  # relay open


class FleetDay(BaseModel):
    day: date
    disconnects: int
    topups: int
    topup_amount: Money


class ConsumptionDay(BaseModel):
    day: date
    used: int  # base units: Wh, litres for water


class MismatchOut(BaseModel):
    """A record the agent priced differently from the hub (its shares per provider, or pool
    for a generation mix); the hub's figures were posted, the agent's only compared."""

    seq: int
    at: datetime
    hub_shares: dict[str, Money]
    agent_shares: dict[str, Money]


class EventOut(BaseModel):
    id: int
    kind: str
    meter: str | None
    reason: str
    at: datetime
    data: dict[str, Any] | None = None


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    kind: str
    actor: str  # "key:7", "gateway:gw-1", "job:NAME", "provider:ID", "cli", "hub:credit_control"
    meter: str | None
    reason: str
    data: dict[str, Any] | None = None


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_before: int | None  # pass as ?before= for the next (older) page; None: no more


class NotificationOut(BaseModel):
    id: int
    kind: str
    meter: str | None
    reason: str
    at: datetime
    reconnect_amount: Money = Field(description="what would reconnect the account now")
    topup_url: str


class NotificationsOut(BaseModel):
    account: str
    balance: Money
    currency: str
    reconnect_amount: Money = Field(
        description="the top-up that brings the balance above the credit rules' reconnect level"
    )
    topup_url: str
    items: list[NotificationOut]
    next_before: int | None = Field(
        default=None, description="pass as ?before= to get the next (older) page"
    )


class StreamToken(BaseModel):
    token: str
    expires_at: int


class EntryLine(BaseModel):
    line_id: int
    entry_id: int
    kind: str
    amount: Money
    at: datetime
    memo: str = ""
    meter: str | None = None
    seq: int | None = None


class EntriesPage(BaseModel):
    items: list[EntryLine]
    next_before: int | None = Field(
        default=None, description="pass as ?before= to get the next (older) page"
    )


class LedgerCheckOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    ok: bool


class StatementOut(BaseModel):
    provider: str
    account: str
    currency: str
    start: datetime
    end: datetime
    opening: Money
    closing: Money
    totals: dict[str, Money]
    lines: list[EntryLine]


class ErrorOut(BaseModel):
    """Every error but 422: a one-line reason and (for the hub's own errors) its class name."""

    detail: str
    error: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "the body could not be read (not UTF-8)"},
    401: {"model": ErrorOut, "description": "missing, unknown or revoked API key"},
    403: {"model": ErrorOut, "description": "the key's role or account does not allow this"},
    404: {"model": ErrorOut, "description": "unknown id"},
    409: {"model": ErrorOut, "description": "duplicate id, or idempotency conflict"},
}


class TokenIn(Body):
    """An offline top-up token for one of the account's meters (docs/tokens.md)."""

    amount: MoneyIn
    meter: Id


class TokenOut(BaseModel):
    """A vended token. ``token``: the 12 digits the customer types at the gateway; the meter's
    secret is never in an answer."""

    id: str
    token: str
    amount: Money
    meter: str
    account: str
    currency: str
    status: Literal["vended", "settled", "cancelled"]
    redeemed: bool = False
