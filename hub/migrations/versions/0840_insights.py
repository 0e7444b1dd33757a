"""tariffs.offer and insight_offers: tariffs that may be offered, and the offers made (issue 19,
hub.insights).

Revision ID: 0840
Revises: 0820
Create Date: 2026-12-04 22:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0840"
down_revision: str | None = "0820"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tariffs") as batch:
        batch.add_column(sa.Column("offer", sa.Boolean(), server_default="0", nullable=False))
    op.create_table(
        "insight_offers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("tariff_id", sa.String(length=64), nullable=True),
        sa.Column("saving", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("shown_at", hub.models.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_insight_offers_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_insight_offers")),
        sa.UniqueConstraint("customer_id", "period", "kind", name="uq_insight_offers_once"),
    )
    op.create_index(
        op.f("ix_insight_offers_customer_id"), "insight_offers", ["customer_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_insight_offers_customer_id"), table_name="insight_offers")
    op.drop_table("insight_offers")
    with op.batch_alter_table("tariffs") as batch:
        batch.drop_column("offer")
