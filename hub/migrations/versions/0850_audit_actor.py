"""events.actor: who or what caused an audited event (issue 20, item 4; hub.audit).

Revision ID: 0850
Revises: 0800
Create Date: 2026-12-04 22:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0850"
down_revision: str | None = "0800"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("actor", sa.String(length=96), nullable=True))
        batch.create_index("ix_events_actor_id", ["actor", "id"])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_actor_id")
        batch.drop_column("actor")
