"""payments, payment_allocations, payment_verifications: payments allocated to the tiers,
paper remittances, bill-payment networks and third-party verification (issue 18, hub.payments).

Revision ID: 0820
Revises: 0850
Create Date: 2026-12-04 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.models.types

revision: str = "0820"
down_revision: str | None = "0850"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "payments",
        sa.Column("id", BIG, nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("credit", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=200), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=True),
        sa.Column("entry_id", BIG, nullable=True),
        sa.Column("bill_id", BIG, nullable=True),
        sa.Column("received_at", hub.models.types.UTCDateTime(), nullable=False),
        sa.Column("credited_at", hub.models.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_payments_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"], ["journal_entries.id"], name=op.f("fk_payments_entry_id_journal_entries")
        ),
        sa.ForeignKeyConstraint(["bill_id"], ["bills.id"], name=op.f("fk_payments_bill_id_bills")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("source_key", name=op.f("uq_payments_source_key")),
    )
    op.create_index(op.f("ix_payments_account_id"), "payments", ["account_id"], unique=False)
    op.create_index(op.f("ix_payments_status"), "payments", ["status"], unique=False)
    op.create_index(op.f("ix_payments_credited_at"), "payments", ["credited_at"], unique=False)
    op.create_table(
        "payment_allocations",
        sa.Column("id", BIG, nullable=False),
        sa.Column("payment_id", BIG, nullable=False),
        sa.Column("bill_id", BIG, nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("entry_id", BIG, nullable=False),
        sa.Column("at", hub.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_allocations_payment_id_payments")
        ),
        sa.ForeignKeyConstraint(
            ["bill_id"], ["bills.id"], name=op.f("fk_payment_allocations_bill_id_bills")
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_payment_allocations_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_allocations")),
    )
    op.create_index(
        op.f("ix_payment_allocations_payment_id"), "payment_allocations", ["payment_id"]
    )
    op.create_index(op.f("ix_payment_allocations_bill_id"), "payment_allocations", ["bill_id"])
    op.create_table(
        "payment_verifications",
        sa.Column("id", BIG, nullable=False),
        sa.Column("payment_id", BIG, nullable=False),
        sa.Column("verifier", sa.String(length=80), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("at", hub.models.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_payment_verifications_payment_id_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_verifications")),
    )
    op.create_index(
        op.f("ix_payment_verifications_payment_id"), "payment_verifications", ["payment_id"]
    )


def downgrade() -> None:
    op.drop_table("payment_verifications")
    op.drop_table("payment_allocations")
    op.drop_table("payments")
