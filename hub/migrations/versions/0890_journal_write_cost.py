"""Less server work per settled usage record (issue 21, scale-out; ``docs/scaling.md`` 2.6):

* ``ix_journal_entries_kind`` dropped: every usage entry paid for an index entry (and its
  WAL record) that no query needs. Nearly every entry is ``usage``; the queries that filter
  by kind read entries through another index (``effective_at``, a line's ``entry_id``) or read
  the whole journal (the invariant checks).
* PostgreSQL only: ``meters`` and ``meter_carry`` keep 30 % of each page free (``fillfactor``
  70), so the updates every batch makes to them (a meter's progress and online time, its rating
  state) can be HOT updates, on the same page and without new index entries; full pages made
  nearly all of them new tuples elsewhere, with an entry in every index (measured: 306 of
  50,000 meter updates HOT). Rows written before this keep their pages until those are
  rewritten (``VACUUM FULL``), then spread out as they are updated.

Revision ID: 0890
Revises: 0880
Create Date: 2026-12-05 04:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0890"
down_revision: str | None = "0880"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLED = ("meters", "meter_carry")


def upgrade() -> None:
    op.drop_index("ix_journal_entries_kind", table_name="journal_entries")
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLED:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLED:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    op.create_index("ix_journal_entries_kind", "journal_entries", ["kind"], unique=False)
