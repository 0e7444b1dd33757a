"""The journal entries' idempotency keys and reversal links are unique where set: partial unique
indexes instead of unique constraints (issue 21, scale-out; PostgreSQL only).

A unique constraint indexes every row, and PostgreSQL's B-tree indexes NULLs: each usage entry
(no key, reversing nothing) put two NULLs into two indexes, written to the WAL, though nothing
asks for them. Only top-ups, payments, standing charges and reversals set either column. The
indexes now hold those entries alone, and uniqueness where set is the same. Measured with
``python -m bench.pg_entries`` (``docs/scaling.md`` 2.6): inserting usage entries takes about
1.1 us less an entry, with two WAL records (about 120 bytes) fewer.
``hub.ledger.posting.post`` names the predicate in its ``ON CONFLICT`` so that PostgreSQL
infers the partial index (SQLite, which keeps its constraints, accepts the same clause).
SQLite is left as it was: its constraints are part of the table (changing one rebuilds the
table and its append-only triggers), and one process on a mini-grid does not need the saving.

Revision ID: 0940
Revises: 0930
Create Date: 2026-12-06 03:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0940"
down_revision: str | None = "0930"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("idempotency_key", "reverses_id")


def _name(column: str) -> str:
    return f"uq_journal_entries_{column}"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_constraint(_name(column), "journal_entries", type_="unique")
        op.execute(f"CREATE UNIQUE INDEX {_name(column)} ON journal_entries ({column}) "
                   f"WHERE {column} IS NOT NULL")  # fmt: skip


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for column in COLUMNS:
        op.drop_index(_name(column), table_name="journal_entries")
        op.create_unique_constraint(_name(column), "journal_entries", [column])
