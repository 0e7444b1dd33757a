"""The hub's tables (SQLModel) and request/response models; import this to fill the metadata."""

from sqlmodel import SQLModel

from hub.models.commands import Command, CommandStatus
from hub.models.devices import (
    Gateway,
    GatewayCreate,
    GatewayPublic,
    Meter,
    MeterCarry,
    MeterCreate,
    MeterCustomer,
    MeterPublic,
)
from hub.models.ingest_state import GatewayEventSeen, GenerationMix, UsageMismatch, UsagePending  # noqa: F401
from hub.models.journal import JournalEntry, JournalLine, PaymentTransaction, PostedUsage
from hub.models.ops import QUARANTINE_PAYLOAD_MAX, ApiKey, Event, EventPublic, Quarantine
from hub.models.parties import (
    ID_PATTERN,
    Account,
    AccountCreate,
    AccountPublic,
    Customer,
    CustomerCreate,
    CustomerPublic,
    Provider,
    ProviderCreate,
    ProviderPublic,
)
from hub.models.tariffs import Tariff, TariffCreate, TariffPublic, TariffVersion
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
    "AccountCreate",
    "AccountKind",
    "AccountPublic",
    "ApiKey",
    "Command",
    "CommandStatus",
    "Customer",
    "CustomerCreate",
    "CustomerPublic",
    "EntryKind",
    "Event",
    "EventPublic",
    "Gateway",
    "GatewayCreate",
    "GatewayPublic",
    "JournalEntry",
    "JournalLine",
    "Meter",
    "MeterCarry",
    "MeterCreate",
    "MeterCustomer",
    "MeterPublic",
    "PaymentTransaction",
    "PostedUsage",
    "Provider",
    "ProviderCreate",
    "ProviderPublic",
    "Quarantine",
    "Relay",
    "Role",
    "Service",
    "Tariff",
    "TariffCreate",
    "TariffPublic",
    "TariffVersion",
    "Tier",
    "UTCDateTime",
    "metadata",
    "utcnow",
]
