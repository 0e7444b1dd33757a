"""meter_bus: each meter's Modbus counters and state from its gateway's newest online status
(issue 15, item 7).

Revision ID: 0870
Revises: 0700
Create Date: 2026-12-04 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0870"
down_revision: str | None = "0700"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = ("requests", "errors", "timeouts", "exceptions", "connection", "frame", "polls",
            "failed_polls", "skipped")  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "meter_bus",
        sa.Column("meter_id", sa.String(length=64), nullable=False),
        sa.Column("reported_at", hub.models.types.UTCDateTime(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTERS),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("last_error", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_meter_bus_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("meter_id", name=op.f("pk_meter_bus")),
    )


def downgrade() -> None:
    op.drop_table("meter_bus")
