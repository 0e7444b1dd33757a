"""The agent's SQLite file: one connection, one lock, transactions that nest.

Everything the gateway keeps lives in the file at ``storage.path``: metering state and wanted
relay states (``agent.metering.store``), the credit book (``agent.credit``), the command gate's
ids (``agent.commands``) and the outbox (``agent.uplink.outbox``). Each of them keeps its own
tables and class but works through one :class:`AgentStore`, so that the engine can make one
closed interval ONE transaction: the meter's new state, the credit book's charge and the outbox
rows commit together or not at all (``Engine._meter``).

:meth:`AgentStore.transaction` is ``BEGIN IMMEDIATE`` … ``COMMIT``; entered again on the same
thread while open, it becomes a ``SAVEPOINT`` inside the outer transaction (so a store method
that opens its own transaction joins the caller's, and its failure undoes only its own part).
Immediate, because a deferred read-then-write transaction fails with SQLITE_BUSY under WAL when
another connection wrote in between (a second process, e.g. an operator's tool).

WAL with ``synchronous=FULL`` makes a commit durable when it returns: WAL with ``NORMAL`` survives
a killed process but may lose the last commits on power loss, and the outbox's ``sent`` mark and
the command gate's seen ids must not be lost (see ``agent/uplink/README.md``). The cost is one
fsync per commit, which is why a closed interval is one commit, not four.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import StoreError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit) usable from any thread."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(path, str(exc)) from exc
    return conn


class AgentStore:
    """The one connection to the agent's SQLite file, thread-safe behind one re-entrant lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = connect(path)
        self._lock = threading.RLock()
        self._level = 0  # open transactions (1 = the outer one, more = savepoints)
        self._after_commit: list[Callable[[], None]] = []
        self._on_rollback: list[Callable[[], None]] = []

    @classmethod
    def of(cls, target: AgentStore | Path) -> tuple[AgentStore, bool]:
        """``target`` itself, or a store opened on the path ``target`` (owned: True)."""
        if isinstance(target, AgentStore):
            return target, False
        return cls(target), True

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """The connection, held for the block (reads see committed data and the open
        transaction of this thread, never half of another thread's)."""
        with self._lock:
            try:
                yield self.conn
            except sqlite3.Error as exc:
                raise StoreError(self.path, str(exc)) from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction (or a savepoint inside this thread's open one), rolled back on any
        exception; SQLite errors become :class:`StoreError`."""
        with self._lock:
            outer = self._level == 0
            name = f"sp{self._level}"
            self._execute("BEGIN IMMEDIATE" if outer else f"SAVEPOINT {name}")
            changes = self.conn.total_changes
            self._level += 1
            try:
                yield self.conn
            except BaseException as exc:
                self._level -= 1
                self._rollback(outer, name, self.conn.total_changes != changes)
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(self.path, str(exc)) from exc
                raise
            self._level -= 1
            try:
                self._execute("COMMIT" if outer else f"RELEASE {name}")
            except StoreError:
                self._rollback(outer, name, True)
                raise
            if outer:
                hooks, self._after_commit = self._after_commit, []
                for hook in hooks:
                    hook()

    def after_commit(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` once the outer transaction commits (now, if none is open); dropped if it
        rolls back."""
        with self._lock:
            if self._level:
                self._after_commit.append(hook)
                return
        hook()

    def on_rollback(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` after every rollback (of a transaction or a savepoint) that undid
        writes, e.g. to reload counters kept in memory."""
        self._on_rollback.append(hook)

    def _execute(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except sqlite3.Error as exc:
            raise StoreError(self.path, str(exc)) from exc

    def _rollback(self, outer: bool, name: str, wrote: bool) -> None:
        try:
            if outer:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
            else:
                self.conn.execute(f"ROLLBACK TO {name}")
                self.conn.execute(f"RELEASE {name}")
        except sqlite3.Error:
            log.exception("rolling back %s failed", "the transaction" if outer else name)
        if outer:
            self._after_commit.clear()
        if wrote:
            for hook in self._on_rollback:
                hook()
