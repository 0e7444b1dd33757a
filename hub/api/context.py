"""What every request handler may reach: settings, the engine, and the optional live services."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from hub.api.ratelimit import FailureLimiter
from hub.metrics import Metrics
from hub.settings import HubSettings


@dataclass
class HubContext:
    settings: HubSettings
    engine: Engine
    # The IngestService when MQTT is configured (``serve``); None in API-only tests.
    ingest: Any | None = None
    # Credit control (``hub.control.engine.CreditControl``): after top-ups, operator actions,
    # and the scheduler's tick. Built by ``hub.app.create_app``.
    control: Any | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # Failed authentications per client address (``hub.api.ratelimit``), from the settings.
    auth_limiter: FailureLimiter = field(init=False)
    # Signs short-lived stream tokens; new per process (a token outlives no restart).
    token_secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    # Set when the server shuts down: open event streams end.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.auth_limiter = FailureLimiter(
            self.settings.auth_failure_burst, self.settings.auth_failure_refill_s
        )

    @property
    def currency(self) -> str:
        return self.settings.currency
