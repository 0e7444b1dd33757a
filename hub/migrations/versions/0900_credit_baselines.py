"""credit_baselines: what each meter was last told of its credit, so that a credit state follows
usage only when the agent cannot work its balance out alone (issue 21, hub.commands.baseline).

Revision ID: 0900
Revises: 0890
Create Date: 2026-12-05 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0900"
down_revision: str | None = "0890"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No row: the next usage of every meter is followed by its credit state, as before.
    op.create_table(
        "credit_baselines",
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("points", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("command_id", sa.String(length=64), nullable=False),
        sa.Column("sent_at", hub.models.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_credit_baselines")),
    )
    op.create_index(
        op.f("ix_credit_baselines_command_id"), "credit_baselines", ["command_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_credit_baselines_command_id"), table_name="credit_baselines")
    op.drop_table("credit_baselines")
