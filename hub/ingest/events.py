"""Gateway events (stored once per id, relay state followed, command acknowledgements settling
the command table) and gateway status (meters online or offline, ``meter_offline`` and
``meter_online`` events on the change, the gateway's open commands due again when it comes
online, each meter's bus health: ``hub.ingest.bus``).

An event is attributed by its topic only: the payload's ``data`` cannot name another gateway or
event id, a ``command_ack`` can settle only a command addressed to its own gateway, and kinds
that are about a meter (``METER_KINDS``) are quarantined without one, so a gateway cannot raise
the operator's disconnect or tamper counters with meter-less events. A ``token_redeemed`` event
settles its token in the same transaction, once (``hub.tokens.settle``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import insert, select, tuple_, update
from sqlalchemy.engine import Connection

from hub.commands.store import lock_commands, settle, wake_gateway
from hub.events import FACT_FAMILIES, joined, same_fact
from hub.ingest.bus import bus_reports, store_bus
from hub.ingest.model import (
    CHUNK,
    T_EVENTS,
    T_METERS,
    T_SEEN,
    Work,
    event_row,
    relay_reported,
)
from hub.tokens.settle import TOKEN_EVENT, settle_token_event
from protocol import topics
from protocol.messages import (
    Event as EventMsg,
)

FACT_LOOKBACK = 20  # a meter's newest events searched for the hub's side of a fact


def store_events(conn: Connection, work: Work, admit: Callable[[str], bool]) -> None:
    """Store the batch's new events once each; ``admit(gateway)`` takes one from the gateway's
    quota (``hub.ingest.quota``): a new event beyond it is neither stored nor confirmed."""
    if not work.events:
        return
    keys = sorted({(gw, e.id) for gw, e in work.events})
    seen: set[tuple[str, str]] = set()
    for i in range(0, len(keys), CHUNK):
        stmt = select(T_SEEN.c.gateway_id, T_SEEN.c.event_id).where(
            tuple_(T_SEEN.c.gateway_id, T_SEEN.c.event_id).in_(keys[i : i + CHUNK])
        )
        seen.update((r.gateway_id, r.event_id) for r in conn.execute(stmt))
    meter_ids = {e.meter for _, e in work.events if e.meter}
    owners: dict[str, str] = dict(conn.execute(
        select(T_METERS.c.id, T_METERS.c.gateway_id).where(T_METERS.c.id.in_(sorted(meter_ids)))
    ).all()) if meter_ids else {}  # fmt: skip
    topic_of = {gw: topics.topic(gw, "events") for gw, _ in work.events}
    lock_commands(conn, (e.data.get("command") for _, e in work.events  # settled below
                         if e.kind in ("command_ack", "command_rejected")))  # fmt: skip
    for gateway, ev in work.events:
        if (gateway, ev.id) in seen:
            work.settled.event(gateway, ev.id)
            work.counts["duplicate_events"] += 1
            continue
        if not admit(gateway):
            work.counts["events_over_quota"] += 1
            work.over_quota.add(gateway)
            continue
        work.settled.event(gateway, ev.id)  # stored, or quarantined below
        seen.add((gateway, ev.id))
        if ev.meter is None and ev.kind in METER_KINDS:
            work.quarantine_payload(topic_of[gateway], ev.model_dump_json(),
                                    f"a {ev.kind} event must name its meter")  # fmt: skip
            continue
        if ev.meter is not None and owners.get(ev.meter) != gateway:
            why = (f"unknown meter {ev.meter!r}" if ev.meter not in owners
                   else f"gateway {gateway!r} does not own meter {ev.meter!r}")  # fmt: skip
            work.quarantine_payload(topic_of[gateway], ev.model_dump_json(), why)
            continue
        # attributed by topic only: the payload cannot claim another gateway or event id
        data: dict[str, Any] = {**ev.data, "gateway": gateway, "event_id": ev.id}
        row_id = _joined_fact(conn, ev, data)
        if row_id is None:
            row_id = conn.execute(
                insert(T_EVENTS).values(kind=ev.kind, meter_id=ev.meter, reason=ev.reason[:500],
                                        at=ev.at, data=data).returning(T_EVENTS.c.id)
            ).scalar_one()  # fmt: skip
        conn.execute(insert(T_SEEN).values(gateway_id=gateway, event_id=ev.id,
                                           event_row_id=row_id))  # fmt: skip
        work.counts["events"] += 1
        _settle_command(conn, gateway, ev, work)
        if ev.kind == TOKEN_EVENT and ev.meter is not None:
            work.counts[f"tokens_{settle_token_event(conn, ev.meter, ev.data)}"] += 1
        relay = relay_of(ev)
        if relay is not None and ev.meter is not None:
            conn.execute(update(T_METERS).where(T_METERS.c.id == ev.meter).values(relay=relay))


def _joined_fact(conn: Connection, ev: EventMsg, data: dict[str, Any]) -> int | None:
    """The hub's event of the same fact, joined by this one's data; None if there is none and
    the event is stored as new. The same fact: the hub's event of the command this event
    reports applying (a ``prompt``, or a switch with ``cause`` "command"), or else
    ``hub.events.same_fact`` (the gateway's rules decided the same as the hub's)."""
    if ev.meter is None or ev.kind in ("command_ack", "command_rejected"):
        return None  # an acknowledgement settles the command table and stays an event of its own
    command = ev.data.get("command")
    family = FACT_FAMILIES.get(ev.kind)
    if not isinstance(command, str) and family is None:
        return None
    rows = conn.execute(
        select(T_EVENTS.c.id, T_EVENTS.c.kind, T_EVENTS.c.at, T_EVENTS.c.data)
        .where(T_EVENTS.c.meter_id == ev.meter).order_by(T_EVENTS.c.id.desc()).limit(FACT_LOOKBACK)
    ).all()  # fmt: skip
    found = next((r for r in rows if isinstance(command, str) and _decided(r.data, command)), None)
    if found is not None:  # the gateway applied the command the hub decided
        data = {**data, "applied": ev.id}
    elif family is not None:
        newest = next((r for r in rows if r.kind in family), None)
        if newest is not None and same_fact(ev.kind, "gateway", ev.at,
                                            (newest.kind, newest.at, newest.data)):  # fmt: skip
            found = newest
    if found is None:
        return None
    conn.execute(update(T_EVENTS).where(T_EVENTS.c.id == found.id)
                 .values(data=joined(found.data, data)))  # fmt: skip
    return int(found.id)


def _decided(data: dict[str, Any] | None, command: str) -> bool:
    """Whether ``data`` is the hub's record of deciding ``command``, not yet joined by the
    gateway's report of applying it (``applied``)."""
    data = data or {}
    return data.get("command_id") == command and "applied" not in data


def _settle_command(conn: Connection, gateway: str, ev: EventMsg, work: Work) -> None:
    """A ``command_ack`` (``data.ok`` false: the relay did not confirm) or ``command_rejected``
    ends the gateway's command ``data.command`` in the command table. A command refused for the
    store epoch it was bound to (``data.epoch_mismatch``: the gateway's store started over)
    stays open: it is published again bound to the epoch the hub now knows."""
    if ev.kind not in ("command_ack", "command_rejected"):
        return
    if ev.kind == "command_rejected" and ev.data.get("epoch_mismatch") is True:
        return
    command_id = ev.data.get("command")
    if not isinstance(command_id, str):
        return
    applied = ev.kind == "command_ack" and ev.data.get("ok", True) is not False
    if settle(conn, gateway, command_id, applied=applied, detail=ev.reason, now=work.now):
        work.counts["commands_settled"] += 1


def apply_statuses(conn: Connection, work: Work) -> None:
    bus: list[dict[str, Any]] = []
    for gateway, status in sorted(work.statuses.items()):
        online = status.state == "online"
        if online:  # it may have missed what was sent while it was away: send again now
            wake_gateway(conn, gateway, work.now)
        rows = conn.execute(select(T_METERS.c.id, T_METERS.c.online, T_METERS.c.last_seen_at)
                            .where(T_METERS.c.gateway_id == gateway)).all()  # fmt: skip
        bus += bus_reports(gateway, status, {r.id for r in rows}, work.now)
        flipped = [r for r in rows if bool(r.online) != online]
        if not flipped:
            continue
        conn.execute(update(T_METERS).where(T_METERS.c.id.in_([r.id for r in flipped]))
                     .values(online=online, last_seen_at=work.now))  # fmt: skip
        # offline: every meter that was online; back: those seen before (not a first start)
        kind, why = ("meter_online", "is back") if online else ("meter_offline", "is offline")
        told = [r.id for r in flipped if not online or r.last_seen_at is not None]
        if told:
            conn.execute(insert(T_EVENTS), [
                event_row(work.now, kind, m, f"gateway {gateway} {why}", {"gateway": gateway})
                for m in told
            ])  # fmt: skip
    store_bus(conn, bus)  # every gateway's counters in one statement


METER_KINDS = frozenset({
    "disconnect", "reconnect", "relay", "relay_on", "relay_off", "relay_change", "relay_changed",
    "disconnected", "reconnected", "tamper", "low_credit", "register_reset", "meter_offline",
    "meter_online", "relay_fault", "prompt", "command_ack", TOKEN_EVENT,
})  # fmt: skip


def relay_of(ev: EventMsg) -> str | None:
    """The relay state an event reports (``hub.ingest.model.relay_reported``)."""
    return relay_reported(ev.kind, ev.data)
