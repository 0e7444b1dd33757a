"""Scheduled jobs run in one process of many (PostgreSQL): the holder of the jobs lock.

Every ``serve`` process on one PostgreSQL database tries, every ``poll_s``, to take the
session-level advisory lock ``pg_try_advisory_lock(JOBS_NS, 0)`` on a connection of its own.
The one that holds it runs the scheduler (standing charges, billing runs, credit ticks, the
ledger check); the others wait. The lock lives as long as that connection: when its process
dies (even kill -9) the server ends the session and another process takes the lock at its
next try, within ``poll_s``. A holder that loses its connection (it checks it every
``poll_s``) stops its scheduler before anyone else can take over. On SQLite (one process)
the scheduler simply runs.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

JOBS_NS = 0x534D5343  # advisory lock namespace ("SMSC"); key 0: the jobs
LEADER_POLL_S = 2.0


class JobsLeader:
    """Calls ``start`` once this process holds the jobs lock and ``stop`` when it no longer
    does (or on ``close``)."""

    def __init__(
        self,
        engine: Engine,
        start: Callable[[], None],
        stop: Callable[[], None],
        poll_s: float = LEADER_POLL_S,
    ) -> None:
        self.engine = engine
        self._start = start
        self._stop = stop
        self.poll_s = poll_s
        self._conn: Connection | None = None
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smsa-jobs-leader", daemon=True)

    @property
    def leading(self) -> bool:
        return self._conn is not None

    def open(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._closing.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self._step()
            except SQLAlchemyError as exc:
                log.warning("jobs: lock not held (%s)", str(exc).strip().splitlines()[0])
                self._resign()
            if self._closing.wait(self.poll_s):
                break
        self._resign()

    def _step(self) -> None:
        if self._conn is not None:
            self._conn.execute(text("SELECT 1"))  # still connected, so still holding the lock
            return
        conn = self.engine.connect()
        conn.execution_options(isolation_level="AUTOCOMMIT")
        taken = conn.execute(
            text("SELECT pg_try_advisory_lock(:ns, 0)"), {"ns": JOBS_NS}
        ).scalar_one()
        if not taken:
            conn.close()
            return
        self._conn = conn
        log.info("jobs: this process runs the scheduled jobs (it holds the jobs lock)")
        self._start()

    def _resign(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._stop()
        with contextlib.suppress(SQLAlchemyError):
            conn.execute(text("SELECT pg_advisory_unlock_all()"))
        with contextlib.suppress(SQLAlchemyError):
            conn.invalidate()  # never back to the pool: its session may still hold the lock
        log.info("jobs: this process no longer runs the scheduled jobs")
