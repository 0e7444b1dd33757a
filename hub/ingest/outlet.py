"""The command path of the ingest service: the dispatcher and the pump it publishes through.

The command dispatcher (``hub.commands.dispatcher``) and credit control, which wakes it, are
built before the ingest service that starts and stops the MQTT pump, so the dispatcher
publishes through a ``PumpOutlet``: the pump that is running now, or none (publishing then
answers False and the command stays due in the table). ``CommandPath.build`` makes the pair.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlalchemy import Engine

from hub.commands.dispatcher import CommandDispatcher
from hub.ingest.transport.pump_link import PumpLink


class PumpOutlet:
    """Publishes through the MQTT pump the ingest service runs (``attach``), if any."""

    def __init__(self) -> None:
        self._pump: PumpLink | None = None
        self._lock = threading.Lock()

    def attach(self, pump: PumpLink | None) -> None:
        """The pump to publish through from now on (None: the service stopped)."""
        with self._lock:
            self._pump = pump

    def publish(self, topic: str, payload: bytes, command_id: str) -> bool:
        """Hand a command to the pump (its PUBACK reaches the dispatcher through the service);
        False when no pump runs."""
        with self._lock:
            pump = self._pump
        return pump is not None and pump.publish(topic, payload, command_id)


@dataclass(frozen=True)
class CommandPath:
    outlet: PumpOutlet
    dispatcher: CommandDispatcher

    @classmethod
    def build(cls, engine: Engine) -> CommandPath:
        outlet = PumpOutlet()
        return cls(outlet, CommandDispatcher(engine, outlet.publish))
