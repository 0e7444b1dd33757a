"""Per-gateway event quotas: a token bucket per gateway, in the settler that owns it.

A gateway with valid credentials could otherwise store events as fast as it can publish them
(20,000 in 7.8 s, 149 MB, before this). New events beyond the quota are neither stored nor
confirmed: an honest gateway keeps them in its outbox and sends them again later, when the
bucket has refilled, so nothing is lost; a flooding one is held to the refill rate. Pure: the
clock is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BURST = 5_000  # events a gateway may send at once (a week offline flushes far fewer)
PER_SECOND = 20.0  # refill: a credit-state acknowledgement every 5 s for 100 meters


@dataclass
class EventQuota:
    burst: float = BURST
    per_second: float = PER_SECOND
    _level: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)

    def admit(self, gateway: str, now: float) -> bool:
        """Take one event's token from ``gateway``'s bucket; False when it is empty."""
        level = self._level.get(gateway, self.burst)
        level = min(self.burst, level + (now - self._at.get(gateway, now)) * self.per_second)
        self._at[gateway] = now
        if level < 1:
            self._level[gateway] = level
            return False
        self._level[gateway] = level - 1
        return True
