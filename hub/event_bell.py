"""The bell event streams wait on: rung when events were committed, by any process.

On PostgreSQL a trigger (migration 0860) sends ``NOTIFY smsa_events`` after each statement that
inserts events; the notification reaches every listening session when the transaction commits.
``EventBell`` keeps one connection per API process listening on that channel (in a thread) and
wakes every open stream (``hub.events.sse_stream``) of the process at once, so an event written
by another API process, a hub's ingest or its jobs reaches the streams here without waiting for
the next poll. The streams still poll (``sse_poll_s``) as a fallback: on SQLite (one process,
no NOTIFY) and while the listening connection is being re-established.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

CHANNEL = "smsa_events"
RECONNECT_S = 2.0
CHECK_S = 0.5  # how often the listening thread looks whether it should stop


class EventBell:
    """Rings ``wait``-ers of one asyncio loop when a NOTIFY arrives (PostgreSQL only)."""

    def __init__(self, db_url: str) -> None:
        url = make_url(db_url)
        self.enabled = url.get_backend_name() == "postgresql"
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rung = asyncio.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Listen (a no-op but on PostgreSQL), waking waiters of ``loop``."""
        self._loop = loop
        self._closing.clear()
        if not self.enabled:
            return
        self._thread = threading.Thread(target=self._listen, name="smsa-event-bell", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()
        if self._thread is not None:
            self._thread.join(CHECK_S + 5)

    def ticket(self) -> asyncio.Event:
        """Taken before reading the events table: ``wait`` then returns at once if the bell
        rang since (nothing committed after the read is slept through)."""
        return self._rung

    async def wait(self, ticket: asyncio.Event, timeout: float) -> None:
        """Until the bell rings (after ``ticket`` was taken) or ``timeout`` seconds pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ticket.wait(), timeout)

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._ring)

    def _ring(self) -> None:
        rung, self._rung = self._rung, asyncio.Event()
        rung.set()

    def _listen(self) -> None:
        import psycopg  # noqa: PLC0415 (the postgres extra: a hub on SQLite never imports it)

        while not self._closing.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._closing.is_set():
                        if any(True for _ in conn.notifies(timeout=CHECK_S, stop_after=1)):
                            self._wake()
            except psycopg.Error as exc:
                if not self._closing.is_set():
                    log.warning("events: not listening (%s); retrying", str(exc).strip())
            finally:
                self.listening.clear()
            self._closing.wait(RECONNECT_S)
