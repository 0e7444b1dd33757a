"""The journal's references hold on both backends: a dangling reference is refused, and so is
deleting an account or a meter the journal refers to. On PostgreSQL statement-level triggers
check them (``hub.migrations.refs``), on SQLite foreign keys."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.exc import IntegrityError

from hub.db import make_engine, write_tx
from hub.ledger.bulk import insert_columns
from hub.models import metadata
from hub.models.types import utcnow
from tests.hub.conftest import SHARED_DB, PgServer
from tests.hub.races import race
from tests.hub.seed import seed_world

ENTRIES, LINES, POSTED = (metadata.tables[t] for t in
                          ("journal_entries", "journal_lines", "posted_usage"))  # fmt: skip


def _entry(engine: Engine, meter: str | None = None) -> int:
    with write_tx(engine) as conn:
        row = {"kind": "adjustment", "currency": "USD", "created_at": utcnow(),
               "effective_at": utcnow(), "meter_id": meter, "memo": ""}  # fmt: skip
        return int(conn.execute(insert(ENTRIES).returning(ENTRIES.c.id), row).scalar_one())


def _refused(engine: Engine, statement: object, rows: object = None) -> str:
    """The refusal's message, in lower case (SQLite's names no column: the word "foreign")."""
    with pytest.raises(IntegrityError) as refused, write_tx(engine) as conn:
        conn.execute(statement, rows)  # type: ignore[call-overload]
    why = str(refused.value.orig).lower()
    assert getattr(refused.value.orig, "sqlstate", "23503") == "23503", why
    return why if engine.dialect.name == "postgresql" else "account entr meter foreign"


def test_dangling_references_are_refused(engine: Engine) -> None:
    world = seed_world(engine, gateways=1, meters_per_gateway=1)
    meter = next(iter(world.meters))
    entry = _entry(engine, meter)
    good = {"entry_id": entry, "account_id": "c-0-0", "amount": 0}
    many = [good] * 50
    assert "account" in _refused(engine, insert(LINES), [*many, {**good, "account_id": "nobody"}])
    assert "entr" in _refused(engine, insert(LINES), [*many, {**good, "entry_id": entry + 99}])
    usage = {"meter_id": "no-meter", "seq": 1, "entry_id": entry, "import_start": 0,
             "import_end": 1}  # fmt: skip
    assert "meter" in _refused(engine, insert(POSTED), usage)
    assert "meter" in _refused(engine, insert(ENTRIES), {
        "kind": "adjustment", "currency": "USD", "created_at": utcnow(),
        "effective_at": utcnow(), "meter_id": "no-meter", "memo": ""})  # fmt: skip
    with write_tx(engine) as conn:
        conn.execute(insert(LINES), many)


def test_the_batch_path_refuses_them_too(engine: Engine) -> None:
    """Batches insert through ``insert_columns``, with binary COPY on PostgreSQL: the checks run
    for it as for an INSERT, and the refusal is SQLAlchemy's ``IntegrityError`` as an insert's."""
    world = seed_world(engine, gateways=1, meters_per_gateway=1)
    entry = _entry(engine, next(iter(world.meters)))
    ok: dict[str, list[Any]] = {"entry_id": [entry] * 50, "account_id": ["c-0-0"] * 50,
                                "amount": [0] * 50}  # fmt: skip
    for column, bad in (("account_id", "nobody"), ("entry_id", entry + 99)):
        with pytest.raises(IntegrityError) as refused, write_tx(engine) as conn:
            insert_columns(conn, LINES, {k: [*v, bad if k == column else v[0]]
                                         for k, v in ok.items()})  # fmt: skip
        assert getattr(refused.value.orig, "sqlstate", "23503") == "23503"
    with write_tx(engine) as conn:
        insert_columns(conn, LINES, ok)
    with write_tx(engine) as conn:
        found = conn.execute(text("SELECT count(*) FROM journal_lines WHERE entry_id = :e"),
                             {"e": entry}).scalar_one()  # fmt: skip
    assert found == 50


def test_a_referenced_account_or_meter_cannot_be_deleted(engine: Engine) -> None:
    world = seed_world(engine, gateways=1, meters_per_gateway=1)
    meter = next(iter(world.meters))
    entry = _entry(engine, meter)
    with write_tx(engine) as conn:
        conn.execute(insert(LINES), {"entry_id": entry, "account_id": "c-0-0", "amount": 0})
    assert _refused(engine, text("DELETE FROM accounts WHERE id = 'c-0-0'"))
    assert _refused(engine, text("DELETE FROM meters WHERE id = :m"), {"m": meter})


# A row the journal refers to, the insert that refers to it, and the delete of it.
RACES = {
    "account": (
        "INSERT INTO accounts (id, name, kind, currency, balance, floor, created_at) "
        "VALUES ('racer', 'Racer', 'customer', 'USD', 0, 0, now())",
        "INSERT INTO journal_lines (entry_id, account_id, amount) VALUES (:entry, 'racer', 0)",
        "DELETE FROM accounts WHERE id = 'racer'",
    ),
    "meter": (
        "INSERT INTO meters (id, gateway_id, service, timezone, relay, online, created_at) "
        "VALUES ('racer', 'gw-0', 'electricity', 'UTC', 'unknown', false, now())",
        "INSERT INTO journal_entries (kind, currency, created_at, effective_at, meter_id, memo) "
        "VALUES ('adjustment', 'USD', now(), now(), 'racer', '')",
        "DELETE FROM meters WHERE id = 'racer'",
    ),
}


@pytest.mark.postgres
@pytest.mark.parametrize("first", ["insert", "delete"])
@pytest.mark.parametrize("row", sorted(RACES))
def test_a_delete_racing_an_insert_that_refers_to_the_row_loses(
    pg_server: PgServer, row: str, first: str
) -> None:
    """Whichever of the two comes first, the second waits for it to commit and is refused: no
    journal row is left naming a deleted account or meter (migration 0930; 0860 share-locked
    the rows instead)."""
    pg_server.wipe(SHARED_DB)
    engine = make_engine(pg_server.url(SHARED_DB))
    try:
        seed_world(engine, gateways=1, meters_per_gateway=1)
        create, refer, delete = RACES[row]
        entry = _entry(engine)
        with write_tx(engine) as conn:
            conn.execute(text(create))
        statements = [text(refer), text(delete)]
        if first == "delete":
            statements.reverse()

        def second() -> None:
            with write_tx(engine) as conn:
                conn.execute(statements[1], {"entry": entry})

        _, failed = race(engine, lambda c: c.execute(statements[0], {"entry": entry}), second)
        assert isinstance(failed, IntegrityError), failed
        assert getattr(failed.orig, "sqlstate", None) == "23503"
        table = "accounts" if row == "account" else "meters"
        with write_tx(engine) as conn:
            kept = conn.execute(text(f"SELECT count(*) FROM {table} WHERE id = 'racer'"))
            assert kept.scalar_one() == (1 if first == "insert" else 0)
    finally:
        engine.dispose()
