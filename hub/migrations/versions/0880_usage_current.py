"""posted_usage.current_mean_a: the mean current the agent read in each interval (issue 19,
the feed of the bypass_suspected anomaly); NULL for records without one.

Revision ID: 0880
Revises: 0810
Create Date: 2026-12-05 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0880"
down_revision: str | None = "0810"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain nullable ADD COLUMN: no table rebuild (which on SQLite would drop the append-only
    # triggers), and every record posted so far has no current.
    op.add_column("posted_usage", sa.Column("current_mean_a", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("posted_usage", "current_mean_a")
