"""Durable commands: every command decided for a meter, published from this table until applied.

Revision ID: 0200
Revises: 0100
Create Date: 2026-12-04 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0200"
down_revision: str | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "commands",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("grp", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("next_try_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("sent_at", hub.models.types.UTCDateTime(), nullable=True),
        sa.Column("done_at", hub.models.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commands")),
    )
    op.create_index(op.f("ix_commands_gateway_id"), "commands", ["gateway_id"], unique=False)
    op.create_index("ix_commands_open", "commands", ["status", "next_try_at"], unique=False)
    op.create_index("ix_commands_meter", "commands", ["meter_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_commands_meter", table_name="commands")
    op.drop_index("ix_commands_open", table_name="commands")
    op.drop_index(op.f("ix_commands_gateway_id"), table_name="commands")
    op.drop_table("commands")
