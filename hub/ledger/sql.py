"""The ledger's tables and small SQL helpers (Core, not ORM), public to the rest of the hub.

Every statement is SQLAlchemy Core over ``hub.models.table(Model)`` handles, the one way the hub
reaches a table. Two kinds of SQL text are deliberate: the hot-path statements of a usage batch
(``hub.ledger.bulk``: rendered once per shape and run with the driver's executemany, which
``posting.apply_deltas`` and ``usage.record_progress`` use too), and the invariant checks
(``hub.ledger.invariants``: one aggregate query per invariant, read next to what it checks).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from hub.models import (
    Account,
    Customer,
    JournalEntry,
    JournalLine,
    Meter,
    MeterCarry,
    PaymentTransaction,
    PostedUsage,
    Provider,
    table,
)

Executor = Session | Connection
"""What every ledger function takes: a Session or a Connection inside the caller's transaction."""

accounts = table(Account)
customers = table(Customer)
providers = table(Provider)
meters = table(Meter)
carry = table(MeterCarry)
entries = table(JournalEntry)
lines = table(JournalLine)
posted = table(PostedUsage)
payments = table(PaymentTransaction)

MAX_AMOUNT = 2**62  # far below BIGINT overflow even when summed over many lines


def conn_of(db: Executor) -> Connection:
    """The Connection behind ``db``; a Session is flushed first so Core sees its pending rows."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    return db


def insert_ignore(
    conn: Connection, table: Table, index_elements: list[str], index_where: Any = None
) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) [WHERE index_where] DO NOTHING`` for the
    connection's dialect; ``index_where``: the predicate of a partial unique index."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=index_elements,
                                                        index_where=index_where)  # fmt: skip


def upsert(conn: Connection, table: Table, index_elements: list[str], update: list[str]) -> Any:
    """``INSERT ... ON CONFLICT (index_elements) DO UPDATE SET <update> = excluded.<update>``."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(table)
    return stmt.on_conflict_do_update(
        index_elements=index_elements, set_={name: stmt.excluded[name] for name in update}
    )
