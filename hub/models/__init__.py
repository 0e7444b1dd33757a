"""The hub's tables (SQLModel); import this to fill the metadata. ``table(Model)`` is the
Core ``Table`` of a model, for SQLAlchemy Core statements. The API's request and response bodies
are in ``hub.api.schemas`` (``GatewayPublic`` here is the one exception)."""

from sqlmodel import SQLModel

from hub.models.billing import (
    Bill,
    BillCounter,
    BillingRun,
    BillLine,
    MeterFeed,
    ProfileConflict,
    ProfileField,
    ReadingMismatch,
    Subscription,
)
from hub.models.commands import Command, CommandStatus, CreditBaseline
from hub.models.devices import (
    Gateway,
    GatewayEpoch,
    GatewayPublic,
    Meter,
    MeterCarry,
    MeterCustomer,
    MeterPayer,
)
from hub.models.ingest_state import (
    GatewayEventSeen,
    GenerationMix,
    MeterBus,
    UsageMismatch,
    UsagePending,
)
from hub.models.insights import InsightOffer
from hub.models.journal import JournalEntry, JournalLine, PaymentTransaction, PostedUsage
from hub.models.ops import QUARANTINE_PAYLOAD_MAX, ApiKey, Event, Quarantine
from hub.models.parties import ID_PATTERN, Account, Customer, Provider
from hub.models.payments import PaymentAllocation, PaymentRecord, PaymentVerification
from hub.models.printing import PaperRoute, PrintSite, PrintZone
from hub.models.selection import MeterPricing, Sla
from hub.models.tables import table
from hub.models.tariffs import Tariff, TariffVersion
from hub.models.tokens import MeterTokenKey, TopupToken
from hub.models.types import (
    AccountKind,
    EntryKind,
    Relay,
    Role,
    Service,
    Tier,
    UTCDateTime,
    utcnow,
)

metadata = SQLModel.metadata

__all__ = [
    "ID_PATTERN",
    "QUARANTINE_PAYLOAD_MAX",
    "Account",
    "AccountKind",
    "ApiKey",
    "Bill",
    "BillCounter",
    "BillLine",
    "BillingRun",
    "Command",
    "CommandStatus",
    "CreditBaseline",
    "Customer",
    "EntryKind",
    "Event",
    "Gateway",
    "GatewayEpoch",
    "GatewayEventSeen",
    "GatewayPublic",
    "GenerationMix",
    "InsightOffer",
    "JournalEntry",
    "JournalLine",
    "Meter",
    "MeterBus",
    "MeterCarry",
    "MeterCustomer",
    "MeterFeed",
    "MeterPayer",
    "MeterPricing",
    "MeterTokenKey",
    "PaperRoute",
    "PaymentAllocation",
    "PaymentRecord",
    "PaymentTransaction",
    "PaymentVerification",
    "PostedUsage",
    "PrintSite",
    "PrintZone",
    "ProfileConflict",
    "ProfileField",
    "Provider",
    "Quarantine",
    "ReadingMismatch",
    "Relay",
    "Role",
    "Service",
    "Sla",
    "Subscription",
    "Tariff",
    "TariffVersion",
    "Tier",
    "TopupToken",
    "UTCDateTime",
    "UsageMismatch",
    "UsagePending",
    "metadata",
    "table",
    "utcnow",
]
