"""What the engine keeps about each meter while it runs."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.modbus.poller import BusPoller, MeterPoint
from agent.relay_rules import RelayState


@dataclass
class MeterRuntime:
    """What the engine keeps about a meter between readings (the relay's wanted state is also
    persisted; the rest is rebuilt after a restart)."""

    point: MeterPoint
    poller: BusPoller
    relay: RelayState = field(default_factory=RelayState)
    last_action: tuple[str, str] = ("none", "")
