"""Ingest state: usage held for a seq gap, share mismatches, gateway events seen, generation mix.

Revision ID: 0100
Revises: 0001
Create Date: 2026-11-22 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0100"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "usage_pending",
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("record", sa.Text(), nullable=False),
        sa.Column("received_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("meter_id", "seq", name=op.f("pk_usage_pending")),
    )
    op.create_index(
        op.f("ix_usage_pending_received_at"), "usage_pending", ["received_at"], unique=False
    )
    op.create_table(
        "usage_mismatches",
        sa.Column("id", BigId, nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hub_shares", sa.JSON(), nullable=False),
        sa.Column("agent_shares", sa.JSON(), nullable=False),
        sa.Column("at", hub.models.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_mismatches")),
    )
    op.create_index(
        op.f("ix_usage_mismatches_meter_id"), "usage_mismatches", ["meter_id"], unique=False
    )
    op.create_table(
        "gateway_events_seen",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_row_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id", "event_id", name=op.f("pk_gateway_events_seen")),
    )
    op.create_table(
        "generation_mix",
        sa.Column("id", BigId, nullable=False),
        sa.Column("meter_id", sa.String(length=64), nullable=True),
        sa.Column("pool", sa.String(length=64), nullable=False),
        sa.Column("start", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("end", hub.models.types.UTCDateTime(), nullable=True),
        sa.Column("measured", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_generation_mix")),
    )
    op.create_index(
        op.f("ix_generation_mix_meter_id"), "generation_mix", ["meter_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_generation_mix_meter_id"), table_name="generation_mix")
    op.drop_table("generation_mix")
    op.drop_table("gateway_events_seen")
    op.drop_index(op.f("ix_usage_mismatches_meter_id"), table_name="usage_mismatches")
    op.drop_table("usage_mismatches")
    op.drop_index(op.f("ix_usage_pending_received_at"), table_name="usage_pending")
    op.drop_table("usage_pending")
