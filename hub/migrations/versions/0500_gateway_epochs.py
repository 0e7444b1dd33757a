"""gateways.epoch and gateway_epochs: a gateway whose store started over (issue 14, item 5).

Revision ID: 0500
Revises: 0400
Create Date: 2026-12-04 19:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0500"
down_revision: str | None = "0400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A nullable ADD COLUMN: no table rebuild; a gateway's epoch is learnt when it next speaks.
    op.add_column("gateways", sa.Column("epoch", sa.String(length=32), nullable=True))
    op.create_table(
        "gateway_epochs",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("seen_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("resume", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", "epoch", name=op.f("pk_gateway_epochs")),
    )


def downgrade() -> None:
    op.drop_table("gateway_epochs")
    op.drop_column("gateways", "epoch")
