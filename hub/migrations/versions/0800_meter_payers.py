"""meter_payers: who paid a meter from when (issue 15: PATCH /meters customer and sharers).

Revision ID: 0800
Revises: 0830
Create Date: 2026-12-04 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0800"
down_revision: str | None = "0830"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "meter_payers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("valid_from", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("sharers", sa.JSON(), nullable=True),
        sa.Column("created_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_meter_payers_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_payers_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_payers")),
    )
    op.create_index(op.f("ix_meter_payers_meter_id"), "meter_payers", ["meter_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_meter_payers_meter_id"), table_name="meter_payers")
    op.drop_table("meter_payers")
