"""The parent's handle on one settling process (``hub.ingest.settler``) and the sharding rule.

Messages go to the settler that owns their gateway (``shard_of``); its reports (``Done``,
``Cpu``) come back to ``on_report(shard, message)``. If a settler dies it is started again and
``on_restart(shard)`` is called: what it held was never acknowledged, so the caller has the
broker deliver it again.
"""

from __future__ import annotations

import functools
import json
import logging
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

from hub.ingest.transport.child import ChildLink
from hub.ingest.transport.messages import FromSettler


@dataclass(frozen=True)
class SettlerConfig:
    db: str
    shard: int
    shards: int
    batch_size: int
    batch_wait_s: float
    currency: str
    hold_s: float
    log_level: str = "WARNING"
    shared: bool = False  # an ingest group: other processes settle the same gateways
    credit_refresh_s: float = 21_600  # hub.ingest.credit_report

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> SettlerConfig:
        return cls(**json.loads(text))


@functools.lru_cache(maxsize=100_000)  # a topic per gateway and kind: the pump asks per message
def shard_of(topic: str, shards: int) -> int:
    """The settler that owns the gateway named in ``topic`` (``smsa/v1/gw/{gw}/...``)."""
    parts = topic.split("/", 4)
    return gateway_shard(parts[3] if len(parts) > 3 else "", shards)


def gateway_shard(gateway: str, shards: int) -> int:
    """The settler that owns ``gateway`` (a stable hash: the same across restarts)."""
    return zlib.crc32(gateway.encode()) % shards


class SettlerLink:
    def __init__(
        self,
        cfg: SettlerConfig,
        on_report: Callable[[int, FromSettler], None],
        on_restart: Callable[[int], None],
    ) -> None:
        self.cfg = cfg
        self.shard = cfg.shard
        self._child = ChildLink(
            "hub.ingest.settler",
            self._config,
            lambda message: on_report(cfg.shard, message),
            lambda _code: None,
            lambda: on_restart(cfg.shard),
        )

    @property
    def pid(self) -> int | None:
        return self._child.pid

    def start(self) -> None:
        self._child.start()

    def stop(self, timeout: float = 30.0) -> None:
        """The settler finishes the batch in hand and reports it before this returns."""
        self._child.stop(timeout)

    def send_pickled(self, message: bytes) -> bool:
        """Pass on a ``Delivery`` the pump pickled for this settler (``Part.pickled``)."""
        return self._child.send_bytes(message)

    def _config(self, _restarts: int) -> str:
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        return replace(self.cfg, log_level=level).to_json()
