"""Table handles and small SQL helpers shared by the ledger modules (Core, not ORM)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from hub.models import metadata

Executor = Session | Connection
"""What every ledger function takes: a Session or a Connection inside the caller's transaction."""

accounts: Table = metadata.tables["accounts"]
customers: Table = metadata.tables["customers"]
providers: Table = metadata.tables["providers"]
meters: Table = metadata.tables["meters"]
carry: Table = metadata.tables["meter_carry"]
entries: Table = metadata.tables["journal_entries"]
lines: Table = metadata.tables["journal_lines"]
posted: Table = metadata.tables["posted_usage"]

MAX_AMOUNT = 2**62  # far below BIGINT overflow even when summed over many lines


def conn_of(db: Executor) -> Connection:
    """The Connection behind ``db``; a Session is flushed first so Core sees its pending rows."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    return db


def insert_ignore(conn: Connection, table: Table, index_elements: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` for the connection's dialect."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def upsert(conn: Connection, table: Table, index_elements: list[str], update: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO UPDATE SET <update> = excluded.<update>``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=index_elements, set_={name: stmt.excluded[name] for name in update}
    )


def allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """``n`` fresh ids for ``table.id`` so a batch can be inserted without RETURNING. On SQLite
    the caller's ``BEGIN IMMEDIATE`` holds the write lock, so max(id) cannot move under us."""
    if conn.dialect.name == "postgresql":
        sql = "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)"
        return [int(i) for i in conn.exec_driver_sql(sql, (table.name, n)).scalars()]
    top = conn.exec_driver_sql(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}").scalar_one()
    return list(range(int(top) + 1, int(top) + 1 + n))


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in one round trip: ``INSERT ... SELECT FROM unnest(arrays)`` on
    PostgreSQL (executemany there pipelines one statement per row), executemany on SQLite."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    names = list(rows[0])
    casts, arrays = [], []
    for name in names:
        column = table.c[name]
        sql_type = column.type.compile(dialect=conn.dialect)
        convert = column.type.bind_processor(conn.dialect)
        values = [row[name] for row in rows]
        if isinstance(column.type, JSON):
            values = [None if v is None else json.dumps(v) for v in values]
        elif convert is not None:
            values = [convert(v) for v in values]
        casts.append(f"CAST(%s AS {sql_type}[])")
        arrays.append(values)
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) "
           f"SELECT * FROM unnest({', '.join(casts)})")  # fmt: skip
    conn.exec_driver_sql(sql, tuple(arrays))
