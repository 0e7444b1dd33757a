"""Engines, transactions and schema migration for SQLite and PostgreSQL.

SQLite: WAL, foreign keys on, a busy timeout, and write transactions opened with
``BEGIN IMMEDIATE`` (pysqlite's own transaction handling is switched off and the BEGIN is
emitted from the engine's ``begin`` event). While another connection writes, the BEGIN is
retried every millisecond (``_begin_immediate``) rather than by SQLite's busy handler, which
sleeps up to 100 ms between tries and so leaves the write lock idle after each release: with
several ingest settlers taking turns, that lock is the hub's critical path. Read transactions
use a plain deferred BEGIN.
PostgreSQL (``postgresql+psycopg://``): READ COMMITTED with row locks; ``run_tx`` retries a
transaction that failed on a serialization failure, a deadlock or a locked SQLite database.
The caller owns every transaction: ledger functions never commit.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlmodel import Session

from hub.errors import DatabaseError, InvalidInputError

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_ONLY = "smsa_read_only"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
PG_MIGRATION_LOCK = 0x534D5341  # "SMSA": serialises concurrent migrations on PostgreSQL
RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
BEGIN_RETRY_S = 0.001  # how often a waiting SQLite writer tries for the write lock


def make_engine(url: str, *, busy_timeout_ms: int = 30_000, echo: bool = False) -> Engine:
    """An engine for ``sqlite:///path`` or ``postgresql+psycopg://...`` (``postgresql://``
    and ``postgres://`` mean the same)."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):  # the only PostgreSQL driver installed is psycopg 3
            url = "postgresql+psycopg://" + url[len(plain) :]
    try:
        if url.startswith("sqlite"):
            engine = create_engine(
                url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30}
            )
            _configure_sqlite(engine, busy_timeout_ms)
            return engine
        if url.startswith("postgresql"):
            return create_engine(url, echo=echo, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        if exc.name == "psycopg":
            raise InvalidInputError(
                "db", "PostgreSQL needs the postgres extra: pip install 'smsa[postgres]'"
            ) from exc
        raise InvalidInputError("db", f"bad database URL: {exc}") from exc
    except (ArgumentError, ImportError) as exc:
        raise InvalidInputError("db", f"bad database URL: {exc}") from exc
    raise InvalidInputError("db", "database URL must start with sqlite:// or postgresql+psycopg://")


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, see _on_begin
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY, False):
            conn.exec_driver_sql("BEGIN")
        elif not _begin_immediate(conn.connection.dbapi_connection, busy_timeout_ms):
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # the last try, through the busy handler


def _begin_immediate(dbapi_conn: Any, busy_timeout_ms: int) -> bool:
    """``BEGIN IMMEDIATE``, tried every ``BEGIN_RETRY_S`` while the database is locked, for up
    to ``busy_timeout_ms``; False when it never got the lock (the caller tries once more)."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    return False  # the caller's try raises it as SQLAlchemy reports errors
            time.sleep(BEGIN_RETRY_S)
        return False
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")


def reader(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions do not take SQLite's write lock."""
    return engine.execution_options(**{READ_ONLY: True})


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite): commits on exit, rolls back on error."""
    with engine.begin() as conn:
        yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    with reader(engine).begin() as conn:
        yield conn


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """An ORM session in one transaction, committed on success, rolled back on error."""
    with Session(engine if write else reader(engine)) as session, session.begin():
        yield session


def is_retryable(exc: BaseException) -> bool:
    """True for a transient conflict: PG serialization failure or deadlock, SQLite busy."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    if getattr(orig, "sqlstate", None) in RETRY_SQLSTATES:
        return True
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text


def run_tx(engine: Engine, work: Callable[[Session], T], *, attempts: int = 8) -> T:
    """Run ``work(session)`` in a write transaction and commit; retry on a transient conflict.

    ``work`` must be safe to run again (it is, when it only uses the database it is given).
    """
    for attempt in range(1, attempts + 1):
        try:
            with session_scope(engine) as session:
                return work(session)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise DatabaseError(f"transaction failed: {exc.orig}") from exc
            delay = min(0.5, 0.005 * 2**attempt) * (0.5 + random.random())
            log.debug("transient conflict (attempt %d): %s; retrying", attempt, exc.orig)
            time.sleep(delay)
    raise AssertionError("unreachable")


def migrate(engine_or_url: Engine | str, *, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision`` (default: the latest) in one transaction;
    a no-op when up to date."""
    engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with write_tx(engine) as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": PG_MIGRATION_LOCK})
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except CommandError as exc:
        raise DatabaseError(f"cannot migrate the database: {exc}") from exc
    except DBAPIError as exc:
        raise DatabaseError(f"cannot migrate the database: {exc.orig}") from exc
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at (None when never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
