"""What every request handler may reach: the application layer's ``Runtime`` (settings, engine,
counters, credit control), the ingest service when MQTT runs, and what only HTTP needs."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine

from hub.api.ratelimit import FailureLimiter
from hub.control.engine import CreditControl
from hub.event_bell import EventBell
from hub.ingest.service import IngestService
from hub.metrics import Metrics
from hub.services.runtime import Runtime
from hub.settings import HubSettings


@dataclass
class HubContext:
    runtime: Runtime
    # The IngestService when MQTT is configured (``serve``); None for the API alone.
    ingest: IngestService | None = None
    # Failed authentications per client address (``hub.api.ratelimit``), from the settings.
    auth_limiter: FailureLimiter = field(init=False)
    # Signs short-lived stream tokens; new per process (a token outlives no restart).
    token_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # Set when the server shuts down: open event streams end.
    stopping: threading.Event = field(default_factory=threading.Event)
    # Wakes this process's event streams when any process commits events (PostgreSQL).
    bell: EventBell = field(init=False)

    def __post_init__(self) -> None:
        self.bell = EventBell(self.settings.db)
        self.auth_limiter = FailureLimiter(
            self.settings.auth_failure_burst, self.settings.auth_failure_refill_s
        )

    @property
    def settings(self) -> HubSettings:
        return self.runtime.settings

    @property
    def engine(self) -> Engine:
        return self.runtime.engine

    @property
    def metrics(self) -> Metrics:
        return self.runtime.metrics

    @property
    def control(self) -> CreditControl:
        return self.runtime.control

    @property
    def currency(self) -> str:
        return self.runtime.currency
