"""posted_usage.segment: the register segment each posted record belongs to (0 until a reset).

Revision ID: 0400
Revises: 0300
Create Date: 2026-11-23 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0400"
down_revision: str | None = "0300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN with a constant default: no table rebuild (which on SQLite would drop
    # the append-only triggers), and every record posted so far is in segment 0.
    op.add_column(
        "posted_usage",
        sa.Column("segment", sa.Integer(), server_default="0", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("posted_usage", "segment")
