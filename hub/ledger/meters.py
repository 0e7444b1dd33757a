"""Per-meter state the ledger keeps: newest posted record, and the rating carry state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hub.ledger.bulk import execute_many
from hub.ledger.sql import Executor, carry, conn_of, upsert
from hub.models import utcnow

if TYPE_CHECKING:
    from hub.ledger.usage import UsagePosting


_PROGRESS = ("UPDATE meters SET last_seq = ?, import_wh = ? "
             "WHERE id = ? AND (last_seq IS NULL OR last_seq < ?)")  # fmt: skip


def record_progress(conn: Any, postings: Sequence[UsagePosting]) -> None:
    """Move each meter's ``last_seq``/``import_wh`` to its highest posted seq (never back),
    and save the carry state of each meter's last record in batch order that has one."""
    newest: dict[str, UsagePosting] = {}
    carries: dict[str, str] = {}
    for p in postings:
        if p.meter_id not in newest or p.seq > newest[p.meter_id].seq:
            newest[p.meter_id] = p
        if p.carry is not None:
            carries[p.meter_id] = p.carry
    execute_many(conn, _PROGRESS, (None, None, None, None),
                 [(newest[m].seq, newest[m].import_end, m, newest[m].seq)
                  for m in sorted(newest)])  # fmt: skip
    for meter_id in sorted(carries):
        set_carry(conn, meter_id, carries[meter_id])


def get_carry(db: Executor, meter_id: str) -> str | None:
    """The rating carry state saved for a meter, or None before its first record."""
    stmt = select(carry.c.state).where(carry.c.meter_id == meter_id)
    return conn_of(db).execute(stmt).scalar_one_or_none()


def set_carry(db: Executor, meter_id: str, state: str) -> None:
    conn = conn_of(db)
    stmt = upsert(conn, carry, ["meter_id"], ["state", "updated_at"])
    conn.execute(stmt.values(meter_id=meter_id, state=state, updated_at=utcnow()))
