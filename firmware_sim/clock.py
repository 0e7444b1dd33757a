"""Simulated time: real seconds from an injectable source, scaled by a speed, as integer ns.

The simulation never runs a timer: every reading asks the clock for "now" and the physics
integrates up to it. Tests inject :class:`ManualClock` (or any ``() -> float`` of seconds).
"""

import time
from collections.abc import Callable
from fractions import Fraction

from firmware_sim.errors import ConfigError

NS_PER_S = 1_000_000_000

RealSource = Callable[[], float]


class ManualClock:
    """A real-time source that only moves when told to (for tests and demos)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds


def parse_speed(text: str) -> Fraction:
    """A speed option ("1", "60", "0.5") as an exact non-negative fraction."""
    try:
        speed = Fraction(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise ConfigError("--speed", f"not a number: {text!r}") from exc
    if speed < 0:
        raise ConfigError("--speed", "must not be negative")
    return speed


class SimClock:
    """Simulated wall time in integer nanoseconds since the Unix epoch.

    ``speed`` simulated seconds pass per real second of ``source``. Changing the speed rebases
    the clock, so simulated time is continuous and never goes backwards.
    """

    def __init__(
        self,
        speed: Fraction | int = 1,
        *,
        source: RealSource = time.monotonic,
        start_epoch_ns: int | None = None,
    ) -> None:
        if speed < 0:
            raise ConfigError("speed", "must not be negative")
        self._source = source
        self._speed = Fraction(speed)
        self._base_real = Fraction(source())
        self._base_sim = time.time_ns() if start_epoch_ns is None else start_epoch_ns
        self._last = self._base_sim

    @property
    def speed(self) -> Fraction:
        return self._speed

    def set_speed(self, speed: Fraction | int) -> None:
        if speed < 0:
            raise ConfigError("speed", "must not be negative")
        now = self.now_ns()
        self._base_real = Fraction(self._source())
        self._base_sim = now
        self._speed = Fraction(speed)

    def now_ns(self) -> int:
        """Simulated epoch nanoseconds now; never less than any earlier answer."""
        elapsed = Fraction(self._source()) - self._base_real
        now = self._base_sim + int(elapsed * self._speed * NS_PER_S)
        self._last = max(self._last, now)
        return self._last
