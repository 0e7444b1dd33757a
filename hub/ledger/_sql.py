"""Table handles and small SQL helpers shared by the ledger modules (Core, not ORM)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
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
payments: Table = metadata.tables["payment_transactions"]

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
