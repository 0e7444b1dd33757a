"""Room for HOT updates in the other tables every usage batch updates (issue 21, scale-out;
``docs/scaling.md`` 2.6), as 0890 made for ``meters`` and ``meter_carry``.

PostgreSQL only: ``credit_baselines`` (each meter's chain, rewritten by every batch of its
usage) and ``accounts`` (each paying customer's balance, and the providers') keep 30 % of each
page free (``fillfactor`` 70), so those updates can stay on the row's page without new index
entries. Measured over 8 rounds of ``bench.batch_cpu``'s fleet shape (3,000 meters): 1,771 of
24,000 chain updates were HOT on full pages, 17,839 with the room; accounts 22,542 and 23,934
of 24,080. Rows written before this keep their pages until those are rewritten (``VACUUM
FULL``), then spread out as they are updated.

Revision ID: 0910
Revises: 0900
Create Date: 2026-12-05 13:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0910"
down_revision: str | None = "0900"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FILLED = ("credit_baselines", "accounts")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLED:
            op.execute(f"ALTER TABLE {table} SET (fillfactor = 70)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FILLED:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
