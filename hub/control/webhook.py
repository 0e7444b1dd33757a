"""Notification channels for credit-control events (low credit, operator alerts, cut-offs).

Every notification is first an ``events`` row (the database outbox, written in the same
transaction as the decision) and a log line; the channels below deliver it further, after the
commit. :class:`WebhookNotifier` POSTs the event as JSON to a URL from a background thread,
retrying with back-off; the receiver checks

    X-SMSA-Timestamp: <unix seconds>
    X-SMSA-Signature: sha256=<hex HMAC-SHA256 over "<timestamp>.<raw body>" with the secret>

(:func:`signature`), and rejects stale timestamps. Delivery is at least once: a receiver
deduplicates by the event ``id`` in the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-SMSA-Signature"
TIMESTAMP_HEADER = "X-SMSA-Timestamp"


class Notifier(Protocol):
    def notify(self, event: dict[str, Any]) -> None: ...


class LogNotifier:
    """The channel that is always there: one INFO line per notification."""

    def notify(self, event: dict[str, Any]) -> None:
        log.info("notify %s %s: %s", event.get("kind"), event.get("meter"), event.get("reason"))


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``timestamp + "." + body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str, *, now: float | None = None,
           window_s: float = 300.0) -> bool:  # fmt: skip
    """True for a fresh, correctly signed delivery (for receivers and tests)."""
    try:
        age = abs((time.time() if now is None else now) - float(timestamp))
    except ValueError:
        return False
    return age <= window_s and hmac.compare_digest(header, signature(secret, timestamp, body))


class WebhookNotifier:
    """Deliver notifications to ``url`` from one background thread, with retries.

    ``notify`` never blocks: a full queue drops the notification with an ERROR (the event row
    keeps it). A delivery is retried ``attempts`` times on a network error, a 5xx, 408 or 429,
    with back-off from ``backoff_s`` doubling to ``max_backoff_s``; other 4xx answers are final.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        timeout_s: float = 5.0,
        queue_max: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http:// or https://, got {url!r}")
        if not secret:
            raise ValueError("webhook secret must not be empty")
        self.url = url
        self.secret = secret
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self.clock = clock
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=queue_max)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = False

    @property
    def idle(self) -> bool:
        return self._queue.empty() and not self._busy

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="smsa-webhook", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the delivery in hand (undelivered notifications stay in the events table)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def notify(self, event: dict[str, Any]) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            log.error("webhook queue full: %s event %s not delivered", event.get("kind"),
                      event.get("id"))  # fmt: skip

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                event = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._busy = True
            try:
                if self._deliver(event):
                    self.delivered += 1
                else:
                    self.failed += 1
            finally:
                self._busy = False

    def _deliver(self, event: dict[str, Any]) -> bool:
        body = json.dumps(event, separators=(",", ":"), default=str).encode()
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            outcome = self._post(body)
            if outcome is None:
                return True
            retry, why = outcome
            if not retry or attempt == self.attempts:
                log.error("webhook: %s event %s not delivered after %d attempt(s): %s",
                          event.get("kind"), event.get("id"), attempt, why)  # fmt: skip
                return False
            log.debug("webhook attempt %d failed (%s); retrying", attempt, why)
            if self._stopping.wait(delay):
                return False
            delay = min(delay * 2, self.max_backoff_s)
        return False

    def _post(self, body: bytes) -> tuple[bool, str] | None:
        """None when delivered, else (retry?, why)."""
        stamp = str(int(self.clock()))
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: signature(self.secret, stamp, body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                answer.read()
            return None
        except urllib.error.HTTPError as exc:
            status = exc.code
            return status >= 500 or status in (408, 429), f"HTTP {status}"
        except (urllib.error.URLError, OSError) as exc:
            return True, str(getattr(exc, "reason", exc))


class Channels:
    """Fan a notification out to the log and every configured channel; never raises."""

    def __init__(self, *channels: Notifier) -> None:
        self.channels: tuple[Notifier, ...] = (LogNotifier(), *channels)

    def notify(self, event: dict[str, Any]) -> None:
        for channel in self.channels:
            try:
                channel.notify(event)
            except Exception:  # a broken channel must not stop the others
                log.exception("notification channel %s failed", type(channel).__name__)
