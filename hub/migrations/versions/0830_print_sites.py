"""print_sites, print_zones and paper_routes: paper bills at the optimal mailing location
(issue 18 item 5, hub.billing.printsites).

Revision ID: 0830
Revises: 0870
Create Date: 2026-12-04 22:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0830"
down_revision: str | None = "0870"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "print_sites",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("per_piece", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("daily_capacity", sa.BigInteger(), nullable=False),
        sa.Column("created_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_print_sites")),
    )
    op.create_table(
        "print_zones",
        sa.Column("site_id", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("transport", sa.BigInteger(), nullable=False),
        sa.Column("co2_g", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["print_sites.id"], name=op.f("fk_print_zones_site_id_print_sites")
        ),
        sa.PrimaryKeyConstraint("site_id", "prefix", name=op.f("pk_print_zones")),
    )
    op.create_table(
        "paper_routes",
        sa.Column("bill_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_id", sa.String(length=64), nullable=True),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("postal_code", sa.String(length=16), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        sa.Column("co2_g", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("candidates", sa.JSON(), nullable=False),
        sa.Column("routed_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bill_id"], ["bills.id"], name=op.f("fk_paper_routes_bill_id_bills")
        ),
        sa.ForeignKeyConstraint(
            ["site_id"], ["print_sites.id"], name=op.f("fk_paper_routes_site_id_print_sites")
        ),
        sa.PrimaryKeyConstraint("bill_id", name=op.f("pk_paper_routes")),
    )
    op.create_index("ix_paper_routes_site_day", "paper_routes", ["site_id", "day"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_paper_routes_site_day", table_name="paper_routes")
    op.drop_table("paper_routes")
    op.drop_table("print_zones")
    op.drop_table("print_sites")
