"""The schema migrates from empty on both backends, re-running is a no-op, and the migrated
schema matches the models; the journal refuses UPDATE and DELETE."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

import hub.models
from hub.db import make_engine, migrate, schema_revision, write_tx
from hub.errors import DatabaseError, InvalidInputError
from hub.migrations.compare import include_object

TABLES = {
    "providers", "tariffs", "tariff_versions", "customers", "accounts", "gateways", "meters",
    "meter_customers", "meter_carry", "journal_entries", "journal_lines", "posted_usage",
    "quarantine", "api_keys", "events", "payment_transactions",
}  # fmt: skip
# the tables every usage batch updates a row of per meter (PostgreSQL leaves room on their pages)
UPDATED_EVERY_BATCH = ("meters", "meter_carry", "credit_baselines", "accounts")


def test_migrate_empty_then_again_is_noop(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert schema_revision(engine) is None
        migrate(engine)
        head = schema_revision(engine)
        assert head is not None
        tables = set(inspect(engine).get_table_names())
        assert tables >= TABLES
        migrate(empty_db_url)  # by URL, a second time
        assert schema_revision(engine) == head
        assert set(inspect(engine).get_table_names()) == tables
        with engine.connect() as conn:
            opts = {"include_object": include_object(conn.dialect.name)}  # hub.migrations.compare
            diff = compare_metadata(
                MigrationContext.configure(conn, opts=opts), hub.models.metadata
            )
        assert diff == []
        if engine.dialect.name == "postgresql":  # room for HOT updates (0890, 0910)
            with engine.connect() as conn:
                options = dict(conn.execute(text(
                    "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:names)"),
                    {"names": list(UPDATED_EVERY_BATCH)}).all())  # fmt: skip
            assert options == {t: ["fillfactor=70"] for t in UPDATED_EVERY_BATCH}
            with engine.connect() as conn:  # unique where set (0940): no NULL of a usage entry
                unique = dict(conn.execute(text(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = "
                    "'journal_entries' AND indexdef LIKE 'CREATE UNIQUE%'")).all())  # fmt: skip
            assert {name: d.partition(" WHERE ")[2] for name, d in unique.items()} == {
                "pk_journal_entries": "",
                "uq_journal_entries_idempotency_key": "(idempotency_key IS NOT NULL)",
                "uq_journal_entries_reverses_id": "(reverses_id IS NOT NULL)",
            }
    finally:
        engine.dispose()


def test_journal_rows_cannot_be_updated_or_deleted(engine: Engine) -> None:
    with write_tx(engine) as conn:
        conn.execute(text("INSERT INTO accounts (id, name, kind, currency, balance, floor, "
                          "created_at) VALUES ('a', 'a', 'platform', 'USD', 0, 0, "
                          "CURRENT_TIMESTAMP)"))  # fmt: skip
        conn.execute(text("INSERT INTO journal_entries (kind, currency, created_at, "
                          "effective_at, memo) VALUES ('adjustment', 'USD', CURRENT_TIMESTAMP, "
                          "CURRENT_TIMESTAMP, 'x')"))  # fmt: skip
    for statement in ("UPDATE journal_entries SET memo = 'y'", "DELETE FROM journal_entries"):
        with pytest.raises(DBAPIError, match="append-only"), write_tx(engine) as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT memo FROM journal_entries")).scalar_one() == "x"


def test_bad_database_urls_fail_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="db"):
        make_engine("mysql://localhost/x")
    with pytest.raises(DatabaseError, match="cannot migrate"):
        migrate(f"sqlite:///{tmp_path}/missing-dir/hub.db")


def test_unknown_revision_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/hub.db"
    migrate(url)
    engine = make_engine(url)
    try:
        with write_tx(engine) as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
        with pytest.raises(DatabaseError, match="from-the-future"):
            migrate(engine)
    finally:
        engine.dispose()
