"""slas, meter_pricing and providers.priority_fee: provider selection (issue 15 item 3).

Revision ID: 0810
Revises: 0860
Create Date: 2026-12-04 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0810"
down_revision: str | None = "0860"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "slas",
        sa.Column("id", _ID, nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("start", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("end", hub.models.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_slas_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["provider_id"], ["providers.id"], name=op.f("fk_slas_provider_id_providers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_slas")),
    )
    op.create_index("ix_slas_customer_id_start", "slas", ["customer_id", "start"], unique=False)
    op.create_table(
        "meter_pricing",
        sa.Column("id", _ID, nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("start", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("tariff_id", sa.String(length=64), nullable=False),
        sa.Column("selection", sa.JSON(), nullable=True),
        sa.Column("created_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_pricing_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["tariff_id"], ["tariffs.id"], name=op.f("fk_meter_pricing_tariff_id_tariffs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meter_pricing")),
    )
    op.create_index(
        "ix_meter_pricing_meter_id_start", "meter_pricing", ["meter_id", "start"], unique=False
    )
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("priority_fee", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("priority_fee")
    op.drop_index("ix_meter_pricing_meter_id_start", table_name="meter_pricing")
    op.drop_table("meter_pricing")
    op.drop_index("ix_slas_customer_id_start", table_name="slas")
    op.drop_table("slas")
