"""Partial indexes of the open commands (issue 21, scale-out; ``docs/scaling.md`` 2.6).

The dispatcher asks every round whether an open command is due or past its expiry
(``hub.commands.store.has_work``). Asked with ``LIMIT 1``, PostgreSQL planned it from
statistics gathered while most commands were open (just after every meter was sent a state)
and scanned the whole table for a row it expected at once, after the commands had been applied:
6 to 11 ms a call with 30,000 commands (``EXPLAIN (ANALYZE, BUFFERS)``), 18 ms a call and 7 %
of the server's time in ``bench.fleet --pg-stats``, until the next ANALYZE. The question is now
the earliest next try and expiry of the open commands, each the first entry of one of these
indexes (0.05 ms with the same stale statistics).

Revision ID: 0920
Revises: 0910
Create Date: 2026-12-05 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0920"
down_revision: str | None = "0910"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_SQL = "status IN ('queued', 'sent')"  # hub.models.commands.OPEN_SQL when written


def upgrade() -> None:
    where = sa.text(OPEN_SQL)
    op.create_index("ix_commands_due", "commands", ["next_try_at"], unique=False,
                    postgresql_where=where, sqlite_where=where)  # fmt: skip
    op.create_index("ix_commands_expiring", "commands", ["expires_at"], unique=False,
                    postgresql_where=where, sqlite_where=where)  # fmt: skip


def downgrade() -> None:
    op.drop_index("ix_commands_expiring", table_name="commands")
    op.drop_index("ix_commands_due", table_name="commands")
