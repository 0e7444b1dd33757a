"""The event store as the API sees it: record, query, and stream as Server-Sent Events.

Events are rows of the ``events`` table, written by ingest (agent events), by credit control
and by the API (operator actions). One fact is one event: a cut-off, a reconnection or a
low-credit prompt that both the hub's credit control and the gateway's own rules record is
stored once, its ``data.sources`` naming both (:func:`same_fact`). Their ids increase, so an
id is also the SSE ``id:`` and a ``Last-Event-ID`` resumes exactly after it. The stream polls
the table (every ``sse_poll_s``), which is simple and correct across processes: whoever writes
an event in the same database, it reaches every open stream; on PostgreSQL a NOTIFY
(``hub.event_bell``) wakes the streams as soon as the event is committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from hub.db import session_scope
from hub.event_bell import EventBell
from hub.models import Event, utcnow

log = logging.getLogger(__name__)

BATCH = 500
RETRY_MS = 2000
# Facts both sides record: the hub decides and the gateway applies (or decides alone, offline).
RELAY_FAMILY = ("disconnect", "reconnect")
FACT_FAMILIES = {"disconnect": RELAY_FAMILY, "reconnect": RELAY_FAMILY,
                 "low_credit": ("low_credit",)}  # fmt: skip
FACT_WINDOW = timedelta(minutes=10)
# Records of the audit trail only (hub.audit, read by GET /audit): the event feed (GET /events,
# the stream, the dashboard) leaves them out; they are bookkeeping, not something that happened
# to a meter.
TRAIL_ONLY = frozenset({
    "provider_created", "tariff_created", "tariff_version_created", "account_created",
    "customer_created", "gateway_created", "meter_created", "subscription_created",
    "api_key_created", "topup", "token_vended", "token_cancelled", "token_settled",
    "usage_settled", "job_posted",
})  # fmt: skip


def source_of(data: dict[str, Any] | None) -> str:
    """Who recorded an event: ``gateway`` (an agent's event), or the hub's ``data.by``."""
    data = data or {}
    return "gateway" if "gateway" in data else str(data.get("by", "hub"))


def same_fact(
    kind: str, source: str, at: datetime, newest: tuple[str, datetime, dict[str, Any] | None] | None
) -> bool:
    """Whether a new event (``kind`` from ``source`` at ``at``) is the fact that ``newest``
    (the meter's newest event of the kind's family: kind, time, data) already records: the same
    kind, from the other side, within ``FACT_WINDOW``, and not yet joined by a second source."""
    if kind not in FACT_FAMILIES or newest is None:
        return False
    old_kind, old_at, old_data = newest
    if old_kind != kind or "sources" in (old_data or {}):
        return False
    old_source = source_of(old_data)
    sides = {old_source, source}
    return "gateway" in sides and len(sides) == 2 and abs(at - old_at) <= FACT_WINDOW


def joined(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """The data of one event recorded by both sides: the first one's, the second's keys it
    lacks, and ``sources``."""
    old = old or {}
    return {**new, **old, "sources": sorted({source_of(old), source_of(new)})}


def newest_of_fact(session: Session, kind: str, meter_id: str) -> Event | None:
    """The meter's newest event of ``kind``'s family (None for kinds that are no such fact)."""
    family = FACT_FAMILIES.get(kind)
    if family is None:
        return None
    stmt = select(Event).where(Event.meter_id == meter_id, col(Event.kind).in_(family))
    return session.exec(stmt.order_by(col(Event.id).desc()).limit(1)).first()


def record_event(
    session: Session,
    kind: str,
    *,
    meter_id: str | None = None,
    reason: str = "",
    data: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Event:
    """Add an event in the caller's transaction; its id is set on return. If the gateway has
    already recorded the same fact (:func:`same_fact`), that event is returned instead, with
    this one's data joined to it (and ``actor``, who caused it, when it had none: hub.audit)."""
    at = utcnow()
    if meter_id is not None and data is not None:
        newest = newest_of_fact(session, kind, meter_id)
        if newest is not None and same_fact(
            kind, source_of(data), at, (newest.kind, newest.at, newest.data)
        ):
            newest.data = joined(newest.data, data)
            newest.actor = newest.actor or actor
            session.add(newest)
            session.flush()
            return newest
    event = Event(kind=kind, meter_id=meter_id, reason=reason[:500], at=at, data=data,
                  actor=actor)  # fmt: skip
    session.add(event)
    session.flush()
    return event


def query_events(
    session: Session,
    *,
    kind: str | None = None,
    exclude: frozenset[str] = frozenset(),
    meter: str | None = None,
    since: datetime | None = None,
    after_id: int | None = None,
    limit: int = 100,
    newest_first: bool = False,
) -> list[Event]:
    stmt = select(Event).where(col(Event.kind).not_in(TRAIL_ONLY))
    if kind:
        stmt = stmt.where(Event.kind == kind)
    if exclude:
        stmt = stmt.where(col(Event.kind).not_in(exclude))
    if meter:
        stmt = stmt.where(Event.meter_id == meter)
    if since is not None:
        stmt = stmt.where(col(Event.at) >= since)
    if after_id is not None:
        stmt = stmt.where(col(Event.id) > after_id)
    order = col(Event.id).desc() if newest_first else col(Event.id).asc()
    return list(session.exec(stmt.order_by(order).limit(limit)).all())


def last_event_id(engine: Engine) -> int:
    with session_scope(engine, write=False) as session:
        found = session.exec(select(func.max(col(Event.id)))).one()
        return int(found or 0)


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "kind": event.kind,
        "meter": event.meter_id,
        "reason": event.reason,
        "at": event.at.isoformat(),
        "data": event.data,
    }


def _fetch_after(
    engine: Engine,
    after_id: int,
    kinds: frozenset[str],
    exclude: frozenset[str],
    meter: str | None,
) -> list[dict[str, Any]]:
    with session_scope(engine, write=False) as session:
        stmt = select(Event).where(col(Event.id) > after_id, col(Event.kind).not_in(TRAIL_ONLY))
        if kinds:
            stmt = stmt.where(col(Event.kind).in_(kinds))
        if exclude:
            stmt = stmt.where(col(Event.kind).not_in(exclude))
        if meter:
            stmt = stmt.where(Event.meter_id == meter)
        rows = session.exec(stmt.order_by(col(Event.id)).limit(BATCH)).all()
        return [event_json(e) for e in rows]


def sse_frame(event: dict[str, Any]) -> bytes:
    return f"id: {event['id']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


async def sse_stream(
    engine: Engine,
    *,
    after_id: int | None,
    kinds: frozenset[str] = frozenset(),
    exclude: frozenset[str] = frozenset(),
    meter: str | None = None,
    poll_s: float = 0.2,
    keepalive_s: float = 15.0,
    disconnected: Callable[[], Awaitable[bool]] | None = None,
    stopping: threading.Event | None = None,
    bell: EventBell | None = None,
) -> AsyncIterator[bytes]:
    """Events after ``after_id`` (None: only new ones) as SSE frames, forever.

    The replay and the live part are one loop over ``id > cursor``, so nothing between them
    can be lost. Rows are read in a worker thread so the event loop never waits on the DB.
    """
    cursor = await asyncio.to_thread(last_event_id, engine) if after_id is None else after_id
    yield f"retry: {RETRY_MS}\n: stream from id {cursor}\n\n".encode()
    quiet_since = time.monotonic()
    while True:
        if stopping is not None and stopping.is_set():
            return
        if disconnected is not None and await disconnected():
            return
        ticket = bell.ticket() if bell is not None else None
        events = await asyncio.to_thread(_fetch_after, engine, cursor, kinds, exclude, meter)
        for event in events:
            cursor = event["id"]
            yield sse_frame(event)
        if not events or len(events) < BATCH:
            if events:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= keepalive_s:
                quiet_since = time.monotonic()
                yield b": keepalive\n\n"
            if bell is not None and ticket is not None:
                await bell.wait(ticket, poll_s)
            else:
                await asyncio.sleep(poll_s)
