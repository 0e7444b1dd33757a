"""Publishes commands from the durable command table (``hub.commands.store``) and follows them.

One thread in the process that owns the MQTT pump. Every ``poll_s`` (or at once when woken
after a decision commits) it, in one transaction: marks ``sent`` what the broker acknowledged
since the last round, ends ``expired`` what passed its expiry (with a ``command_expired`` event
the operator sees), and takes what is due; then it publishes those, byte for byte as stored,
through ``publish(topic, payload, command_id)``, which reports the broker's PUBACK back through
:meth:`CommandDispatcher.on_puback`. Nothing here decides what to send: a command is in the table
before this thread ever sees it, so a hub that dies between the decision and the publish sends
it when it starts again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert

from hub.commands import store
from hub.db import read_tx, write_tx
from hub.models import Event, table

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, str], bool]
PRUNE_EVERY_S = 3600.0
KEEP_CREDIT = timedelta(days=2)
_events = table(Event)


def utc_now() -> datetime:
    return datetime.now(UTC)


class CommandDispatcher:
    """See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        publish: Publish,
        *,
        poll_s: float = 0.5,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.poll_s = poll_s
        self.clock = clock
        self.published = 0
        self._acked: set[str] = set()
        self._acked_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pruned_at = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="smsa-commands", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """A command was queued: publish it now rather than at the next poll."""
        self._wake.set()

    def on_puback(self, command_id: str) -> None:
        """The broker acknowledged command ``command_id`` (any thread)."""
        with self._acked_lock:
            self._acked.add(command_id)
        self._wake.set()

    def step(self) -> int:
        """One round (see the module docstring); the number of commands published."""
        now = self.clock()
        with self._acked_lock:
            acked, self._acked = self._acked, set()
        prune = time.monotonic() - self._pruned_at > PRUNE_EVERY_S
        if not acked and not prune:
            with read_tx(self.engine) as conn:  # an idle round takes no write lock
                if not store.has_work(conn, now):
                    return 0
        with write_tx(self.engine) as conn:
            store.mark_sent(conn, acked, now)
            expired = store.expire(conn, now)
            if expired:
                conn.execute(insert(_events), [
                    {"kind": "command_expired", "meter_id": r["meter_id"], "at": now,
                     "reason": f"{r['action']} command {r['id']} expired before the gateway "
                               f"applied it (it was {r['status']})",
                     "data": {"command_id": r["id"], "action": r["action"],
                              "gateway": r["gateway_id"], "status": str(r["status"])}}
                    for r in expired
                ])  # fmt: skip
            if prune:
                self._pruned_at = time.monotonic()
                store.prune(conn, now - KEEP_CREDIT)
            due = store.due(conn, now)
        for command in due:
            if self.publish(command.topic, command.payload, command.id):
                self.published += 1
        for row in expired:
            log.warning("command %s (%s) to %s expired before it was applied",
                        row["id"], row["action"], row["meter_id"])  # fmt: skip
        return len(due)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._stopping.is_set():
                break
            try:
                self.step()
            except Exception:  # the database is away: the table keeps everything, try again
                log.exception("commands: dispatch round failed; retrying")
                self._stopping.wait(1.0)
