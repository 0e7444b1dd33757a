"""Payment transactions: one row per (provider, transaction id), apart from API idempotency keys.

Before this revision a payment's journal key was ``topup:<account>:pay:<provider>:<txn>``: the
same provider transaction could be credited once per account, and an API client could claim
the key with ``Idempotency-Key: pay:<provider>:<txn>``. Payments now record the transaction
here (and key their entry ``payment:<provider>:<txn>``). The journal is append-only, so the old
keys stay as they are; this migration records every payment they posted (the entries whose
metadata names ``payment_provider`` and ``transaction_id``, which only the callback handler
wrote), the first entry per transaction, so a provider's retry after the upgrade is still
credited once.

Revision ID: 0300
Revises: 0200
Create Date: 2026-12-04 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0300"
down_revision: str | None = "0200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "payment_transactions"


def upgrade() -> None:
    table = op.create_table(
        TABLE,
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("transaction_id", sa.String(length=80), nullable=False),
        sa.Column("entry_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["journal_entries.id"],
            name=op.f("fk_payment_transactions_entry_id_journal_entries"),
        ),
        sa.PrimaryKeyConstraint("provider", "transaction_id", name=op.f("pk_payment_transactions")),
        sa.UniqueConstraint("entry_id", name=op.f("uq_payment_transactions_entry_id")),
    )
    assert table is not None
    if legacy := list(_legacy_payments().values()):
        op.bulk_insert(table, legacy)
    _append_only()


def _legacy_payments() -> dict[tuple[str, str], dict[str, object]]:
    entries = sa.table(
        "journal_entries",
        sa.column("id", sa.BigInteger()),
        sa.column("kind", sa.String()),
        sa.column("idempotency_key", sa.String()),
        sa.column("metadata", sa.JSON()),
    )
    rows = op.get_bind().execute(
        sa.select(entries.c.id, entries.c.idempotency_key, entries.c["metadata"])
        .where(entries.c.kind == "topup", entries.c.idempotency_key.like("topup:%:pay:%"))
        .order_by(entries.c.id)
    )
    found: dict[tuple[str, str], dict[str, object]] = {}
    for entry_id, key, stored in rows:
        meta = stored or {}
        provider, txn = meta.get("payment_provider"), meta.get("transaction_id")
        account = (meta.get("topup") or {}).get("account")
        if not provider or not txn or key != f"topup:{account}:pay:{provider}:{txn}":
            continue  # a client's own key that only looks like a payment's
        found.setdefault(
            (provider, txn), {"provider": provider, "transaction_id": txn, "entry_id": entry_id}
        )
    return found


def _append_only() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {TABLE}_no_{action.lower()} BEFORE {action} ON {TABLE} "
                f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END"
            )
        return
    op.execute(
        f"CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION smsa_append_only()"
    )
    op.execute(
        f"CREATE TRIGGER {TABLE}_no_truncate BEFORE TRUNCATE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION smsa_append_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_truncate ON {TABLE}")
    op.drop_table(TABLE)
