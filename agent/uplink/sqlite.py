"""SQLite connections for the agent's local state: WAL, full sync, explicit transactions.

Every store (outbox, credit book, command gate) opens its own connection to the same file and
serializes its own use of it with a lock. ``synchronous=FULL`` makes a commit durable when it
returns: WAL with ``NORMAL`` survives a killed process but may lose the last commits on power
loss, and the outbox's "sent" mark and the command gate's seen ids must not be lost (see
``agent/uplink/README.md``). The cost is one fsync per commit, a few per second at most here.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agent.errors import AgentError

BUSY_TIMEOUT_MS = 10_000


class StoreError(AgentError):
    """The local SQLite store cannot be opened or written; ``path`` names the file."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"local store {path}: {detail}")


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


@contextmanager
def transaction(conn: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception; SQLite errors become
    :class:`StoreError`.

    Immediate, because a deferred read-then-write transaction fails with SQLITE_BUSY under WAL
    when another connection wrote in between.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(path, str(exc)) from exc
