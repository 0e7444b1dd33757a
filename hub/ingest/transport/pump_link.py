"""The parent's handle on the MQTT pump process (``hub.ingest.transport.pump``).

A ``ChildLink`` (``hub.ingest.transport.child``) whose messages are chunks of received messages
(``Routed``, whose parts are handed to ``on_messages``) and connection changes (``Up``,
``Down``, ``Protocol``, ``PubAck``, ``Cpu``: handed to ``on_event``). If the pump dies it is
started again with a higher generation base, so nothing received by the dead one is ever
acknowledged by the new one (the broker redelivers it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from hub.ingest.transport.child import ChildLink
from hub.ingest.transport.messages import (
    Ack,
    Down,
    Part,
    Publish,
    PublishAll,
    PumpEvent,
    Routed,
)

GENERATIONS_PER_PUMP = 1_000_000


@dataclass(frozen=True)
class PumpConfig:
    url: str
    client_id: str
    v5: bool
    session_expiry_s: int
    receive_maximum: int
    shards: int = 1  # settlers: messages are forwarded split by ``settler_link.shard_of``
    generation_base: int = 0  # this pump's generations start above it (one base per restart)
    log_level: str = "WARNING"
    ca_file: str | None = None  # CA bundle that verifies an mqtts:// broker (None: system CAs)
    share: str | None = None  # an ingest group: subscribe as ``$share/SHARE/...``

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PumpConfig:
        return cls(**json.loads(text))


class PumpLink:
    def __init__(
        self,
        cfg: PumpConfig,
        on_messages: Callable[[list[Part]], None],
        on_event: Callable[[PumpEvent], None],
    ) -> None:
        self.cfg = cfg
        self._on_messages = on_messages
        self._on_event = on_event
        self._child = ChildLink(
            "hub.ingest.transport.pump", self._config, self._on_message, self._on_exit
        )

    @property
    def pid(self) -> int | None:
        """The pump process's pid (for health checks and tests), None when not started."""
        return self._child.pid

    def start(self) -> None:
        self._child.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._child.stop(timeout)

    def restart(self) -> None:
        """A new pump on a new connection (new generations): the broker delivers every
        unacknowledged message again."""
        self._child.restart()

    def ack(self, generation: int, mids: list[int]) -> None:
        """Have the pump acknowledge the QoS 1 messages ``mids`` of connection ``generation``."""
        if mids:
            self._child.send(Ack(generation, mids))

    def publish(self, topic: str, payload: bytes, token: str | None = None) -> bool:
        """Hand ``topic``/``payload`` to the pump (QoS 1); False when no pump is running. With a
        ``token``, the broker's PUBACK comes back as ``on_event(PubAck(token))``."""
        return self._child.send(Publish(topic, payload, token))

    def publish_all(self, items: list[tuple[str, bytes]]) -> bool:
        """Hand every ``(topic, payload)`` of ``items`` to the pump in one message (QoS 1, no
        PUBACK reported); False when no pump is running."""
        return not items or self._child.send(PublishAll(items))

    def _config(self, restarts: int) -> str:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        base = restarts * GENERATIONS_PER_PUMP
        return replace(self.cfg, generation_base=base, log_level=level).to_json()

    def _on_message(self, message: Routed | PumpEvent) -> None:
        if isinstance(message, Routed):
            self._on_messages(message.parts)
        else:
            self._on_event(message)

    def _on_exit(self, _code: int | None) -> None:
        self._on_event(Down("pump process ended"))
