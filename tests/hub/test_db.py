"""Engine behaviour: SQLite write transactions take the write lock at BEGIN (IMMEDIATE) while
readers carry on; URLs are normalised or refused in one line."""

from __future__ import annotations

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


def test_plain_postgresql_urls_use_psycopg() -> None:
    for url in ("postgresql://u@127.0.0.1:1/x", "postgres://u@127.0.0.1:1/x"):
        engine = make_engine(url)
        assert engine.dialect.driver == "psycopg"
        engine.dispose()
