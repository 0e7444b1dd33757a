"""Engine behaviour: SQLite write transactions take the write lock at BEGIN (IMMEDIATE) while
readers carry on; URLs are normalised or refused in one line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from hub.db import make_engine, migrate, read_tx, run_tx, write_tx
from hub.errors import DatabaseError


def test_sqlite_write_transactions_begin_immediate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url, busy_timeout_ms=50)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 50
        with write_tx(engine):  # holds the write lock without having written anything
            with pytest.raises(OperationalError, match="locked"), write_tx(engine):
                pass
            with pytest.raises(DatabaseError, match="locked"):
                run_tx(engine, lambda s: s.execute(text("SELECT 1")), attempts=2)
            with read_tx(engine) as reader:  # readers are not blocked under WAL
                assert reader.execute(text("SELECT COUNT(*) FROM accounts")).scalar() == 0
    finally:
        engine.dispose()


def test_a_waiting_writer_gets_the_lock_once_it_is_released(tmp_path: Path) -> None:
    """A writer blocked by another retries BEGIN IMMEDIATE itself (hub.db._begin_immediate)
    and gets in after the release; the busy timeout is left as configured."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    migrate(url)
    engine = make_engine(url, busy_timeout_ms=10_000)
    holding, release = threading.Event(), threading.Event()
    order: list[str] = []

    def hold() -> None:
        with write_tx(engine):
            holding.set()
            release.wait(10)
            order.append("holder done")

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        release.set()
        with write_tx(engine) as conn:
            order.append("waiter in")
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
    finally:
        release.set()
        holder.join(10)
        engine.dispose()
    assert order == ["holder done", "waiter in"]


def test_plain_postgresql_urls_use_psycopg() -> None:
    for url in ("postgresql://u@127.0.0.1:1/x", "postgres://u@127.0.0.1:1/x"):
        engine = make_engine(url)
        assert engine.dialect.driver == "psycopg"
        engine.dispose()
