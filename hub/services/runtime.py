"""What every use case works with: the settings, the engine, the counters and credit control,
built once by the composition root (``hub.compose``)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hub.control.engine import CreditControl
from hub.metrics import Metrics
from hub.settings import HubSettings


@dataclass(frozen=True)
class Runtime:
    settings: HubSettings
    engine: Engine
    metrics: Metrics
    # The one credit control of the process: ingest, top-ups, operator actions and the
    # scheduler's tick all run through it (and through its notification channels).
    control: CreditControl

    @property
    def currency(self) -> str:
        return self.settings.currency
