"""The rating carry state the ledger keeps per meter (``usage.record_progress`` moves the
meter's newest posted record)."""

from __future__ import annotations

from sqlalchemy import select

from hub.ledger.sql import Executor, carry, conn_of, upsert
from hub.models import utcnow


def get_carry(db: Executor, meter_id: str) -> str | None:
    """The rating carry state saved for a meter, or None before its first record."""
    stmt = select(carry.c.state).where(carry.c.meter_id == meter_id)
    return conn_of(db).execute(stmt).scalar_one_or_none()


def set_carry(db: Executor, meter_id: str, state: str) -> None:
    conn = conn_of(db)
    stmt = upsert(conn, carry, ["meter_id"], ["state", "updated_at"])
    conn.execute(stmt.values(meter_id=meter_id, state=state, updated_at=utcnow()))
