"""A limit on failed authentications per client address: a token bucket each, in memory.

A client may fail ``burst`` times at once; its bucket then refills one failure every
``refill_s`` seconds. A failure with the bucket empty is answered 429 with ``Retry-After``
(the seconds until the next failure is allowed) instead of 401, so a client guessing keys
learns nothing faster than ``1 / refill_s`` guesses a second. Only failures are counted:
a correct key is checked and served as before, never slowed, even from an address that is
being refused. What counts as a failure: a Bearer key that is unknown or revoked, a stream
token that is malformed, badly signed, expired or whose key is revoked, a payment callback
whose signature or timestamp is refused. A request without any credential is not a guess
and is not counted.

The address is uvicorn's ``client`` (behind a reverse proxy on the same host, the real
client's, from ``X-Forwarded-For``, which uvicorn trusts from loopback only). Buckets live in
the process (they are lost on a restart) and at most ``max_tracked`` are kept: full buckets
are dropped first, then the least recently used.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from hub.errors import TooManyFailuresError


class FailureLimiter:
    def __init__(
        self,
        burst: int,
        refill_s: float,
        *,
        max_tracked: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or refill_s <= 0:
            raise ValueError("burst must be at least 1 and refill_s positive")
        self.burst = burst
        self.refill_s = refill_s
        self.max_tracked = max_tracked
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def _tokens(self, address: str, now: float) -> float:
        found = self._buckets.get(address)
        if found is None:
            return float(self.burst)
        tokens, at = found
        return min(float(self.burst), tokens + (now - at) / self.refill_s)

    def fail(self, address: str) -> float:
        """Count one failure of ``address``: 0.0 when its bucket allowed it, otherwise the
        seconds until it allows one (nothing is taken then)."""
        now = self._clock()
        with self._lock:
            tokens = self._tokens(address, now)
            allowed = tokens >= 1
            self._buckets.pop(address, None)  # re-inserted last: the dict is in use order
            self._buckets[address] = (tokens - 1 if allowed else tokens, now)
            if len(self._buckets) > self.max_tracked:
                self._prune(now)
            return 0.0 if allowed else (1 - tokens) * self.refill_s

    def check(self, address: str, error: Exception) -> Exception:
        """``error`` (a failed authentication) to raise for ``address``, or the 429 that
        replaces it once the address is out of failures."""
        wait = self.fail(address)
        if wait <= 0:
            return error
        return TooManyFailuresError(max(1, math.ceil(wait)))

    def _prune(self, now: float) -> None:
        for address in [a for a in self._buckets if self._tokens(a, now) >= self.burst]:
            del self._buckets[address]
        while len(self._buckets) > self.max_tracked:
            del self._buckets[next(iter(self._buckets))]
