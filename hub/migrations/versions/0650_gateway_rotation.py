"""gateways.next_command_key and next_mqtt_password_hash: a credential rotation the gateway has
not acknowledged yet (issue 15, item 5).

Revision ID: 0650
Revises: 0600
Create Date: 2026-12-04 20:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0650"
down_revision: str | None = "0600"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable ADD COLUMNs: no table rebuild
    op.add_column("gateways", sa.Column("next_command_key", sa.String(length=128), nullable=True))
    op.add_column(
        "gateways", sa.Column("next_mqtt_password_hash", sa.String(length=256), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("gateways", "next_mqtt_password_hash")
    op.drop_column("gateways", "next_command_key")
