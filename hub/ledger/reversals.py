"""Corrections: an entry is never changed; it is reversed by its exact negation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select

from hub.errors import AlreadyReversedError, NotFoundError
from hub.ledger.posting import post
from hub.ledger.sql import Executor, conn_of, entries, lines
from hub.models import EntryKind


def post_reversal(
    db: Executor,
    entry_id: int,
    *,
    memo: str = "",
    effective_at: datetime | None = None,
    enforce_floor: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Post the exact negation of entry ``entry_id`` (kind ``reversal``) and return its id.
    An entry is reversed at most once (AlreadyReversedError). Floors are not enforced unless
    asked: a correction must be possible even when it overdraws. A reversed usage record
    stays in ``posted_usage``: its (meter, seq) is still consumed and never posted again."""
    conn = conn_of(db)
    original = conn.execute(select(entries).where(entries.c.id == entry_id)).first()
    if original is None:
        raise NotFoundError("entry", entry_id)
    done = conn.execute(select(entries.c.id).where(entries.c.reverses_id == entry_id)).first()
    if done is not None:
        raise AlreadyReversedError(entry_id, int(done.id))
    rows = conn.execute(
        select(lines.c.account_id, lines.c.amount).where(lines.c.entry_id == entry_id)
    ).all()
    if not rows:
        raise NotFoundError("entry lines to reverse", entry_id)
    meta = {"reverses": entry_id, **(metadata or {})}
    return post(
        conn, EntryKind.REVERSAL, [(r.account_id, -r.amount) for r in rows], original.currency,
        effective_at=effective_at, memo=memo or f"reversal of entry {entry_id}", metadata=meta,
        meter_id=original.meter_id, seq=original.seq, reverses_id=entry_id,
        enforce_floor=enforce_floor,
    ).entry_id  # fmt: skip
