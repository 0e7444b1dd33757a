"""The audit trail: who or what caused every money movement, command and configuration change
(issue 15 item 5, issue 20 item 4).

One mechanism: an audited fact is one row of the ``events`` table, written in the fact's own
transaction, whose ``actor`` column names who or what caused it (:func:`key_actor` "key:7", an
API key; :func:`gateway_actor` "gateway:gw-1", its signed records; :func:`job_actor`
"job:standing_charges", a scheduler job; :func:`provider_actor` "provider:acme", a signed
payment callback; ``cli``, the command line; ``hub:credit_control``, the credit rules). Other
events (an agent's tamper report, a status change) have no actor and are not in the trail.
``GET /api/v1/audit`` (admin) reads the trail newest first with filters (:func:`trail`).

What is audited (``kind``): configuration changes (``customer_changed``, ``meter_changed``,
``api_key_revoked``, ``gateway_rotated``, each ``{"from", "to"}`` per field, no secret ever
written; and ``<thing>_created`` for providers, tariffs and their versions, accounts,
customers, gateways, meters, subscriptions, API keys); money movements (``topup``, ``token_vended``,
``token_cancelled``, ``token_settled`` (the gateway's redemption), ``usage_settled`` once per
gateway per settled batch, ``job_posted`` per scheduler run that posted, and credit control's
own ``alternate_draw``, ``emergency_credit``, ``debt_recovery`` ...); commands (an operator's
``disconnect`` / ``reconnect``, credit control's, a rotation, each with its ``command_id``).
``data`` always has ``by`` (admin, api_key, operator, provider, cli, gateway, job or
credit_control) and what the fact concerns. A customer's changes are also read by ``GET
/customers/{id}/history``, a meter's by ``GET /meters/{id}/history``. A request that changes
nothing records nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert
from sqlmodel import Session, col, select

from hub.events import TRAIL_ONLY, record_event
from hub.ledger import UsagePosting
from hub.models import Event, table, utcnow

CLI = "cli"
CREDIT_CONTROL = "hub:credit_control"
ACTOR_KINDS = ("key", "gateway", "job", "provider", "cli", "hub")

CUSTOMER_CHANGED = "customer_changed"
METER_CHANGED = "meter_changed"
KEY_REVOKED = "api_key_revoked"
GATEWAY_ROTATED = "gateway_rotated"


def audit_row(
    at: datetime, kind: str, actor: str, reason: str, data: Mapping[str, Any]
) -> dict[str, Any]:
    """An audited event as a row for a Core insert into ``events`` (the batch writers)."""
    return {"kind": kind, "meter_id": None, "reason": reason[:500], "at": at,
            "data": dict(data), "actor": actor}  # fmt: skip


def usage_audit_rows(
    at: datetime,
    posted: Sequence[tuple[str, int, int]],
    postings: Sequence[UsagePosting],
    gateways: Mapping[str, str],
) -> list[dict[str, Any]]:
    """``usage_settled``, one per gateway of a settled batch: the signed records of that
    gateway caused these postings (``posted``: (meter, seq, entry id); ``gateways``: each
    meter's gateway). Its entries are the journal's usage entries ``first_entry`` ..
    ``last_entry`` whose meter is the gateway's."""
    debits: dict[tuple[str, int], int] = {
        (p.meter_id, p.seq): -sum(a for _, a in p.lines if a < 0) for p in postings
    }
    per: dict[str, dict[str, Any]] = {}
    for meter, seq, entry in posted:
        gateway = gateways[meter]
        row = per.setdefault(
            gateway,
            {
                "by": "gateway",
                "gateway": gateway,
                "records": 0,
                "debit": 0,
                "first_entry": entry,
                "last_entry": entry,
            },
        )
        row["records"] += 1
        row["debit"] += debits.get((meter, seq), 0)
        row["first_entry"] = min(row["first_entry"], entry)
        row["last_entry"] = max(row["last_entry"], entry)
    return [
        audit_row(
            at,
            "usage_settled",
            gateway_actor(gateway),
            f"{d['records']} usage records of gateway {gateway} settled, "
            f"{d['debit']} minor units debited",
            d,
        )
        for gateway, d in sorted(per.items())
    ]


def insert_audit(
    conn: Connection,
    kind: str,
    actor: str,
    reason: str,
    data: Mapping[str, Any],
    *,
    meter_id: str | None = None,
) -> None:
    """One audited fact through a Core connection, in its transaction."""
    row = audit_row(utcnow(), kind, actor, reason, data)
    conn.execute(insert(table(Event)), [{**row, "meter_id": meter_id}])


def job_audit(conn: Connection, job: str, entries: int, data: Mapping[str, Any]) -> None:
    """``job_posted``: a scheduler job's run that posted ``entries`` journal entries (none: no
    row), in the job's transaction."""
    if entries:
        insert_audit(conn, "job_posted", job_actor(job), f"job {job} posted {entries} entries",
                     {"by": "job", "job": job, "entries": entries, **data})  # fmt: skip


def key_actor(key_id: int | None) -> str:
    """An API key by id; None (no key: the command line) is ``cli``."""
    return CLI if key_id is None else f"key:{key_id}"


def gateway_actor(gateway_id: str) -> str:
    return f"gateway:{gateway_id}"


def job_actor(name: str) -> str:
    return f"job:{name}"


def provider_actor(provider: str) -> str:
    return f"provider:{provider}"


def record_audit(
    session: Session,
    kind: str,
    actor: str,
    reason: str,
    data: Mapping[str, Any],
    *,
    meter_id: str | None = None,
) -> Event:
    """One audited fact in the caller's transaction."""
    return record_event(session, kind, meter_id=meter_id, reason=reason, data=dict(data),
                        actor=actor)  # fmt: skip


def record_created(
    session: Session, what: str, ident: str, *, key_id: int | None, fields: Mapping[str, Any]
) -> Event:
    """``<what>_created``: a record made through the API (or the command line) and its
    non-secret fields."""
    if f"{what}_created" not in TRAIL_ONLY:
        raise ValueError(f"{what}_created is not a trail kind (hub.events.TRAIL_ONLY)")
    by = f"API key {key_id}" if key_id is not None else "the command line"
    return record_audit(
        session, f"{what}_created", key_actor(key_id), f"{what} {ident} created by {by}",
        {"by": "admin" if key_id is not None else "cli", "key_id": key_id, what: ident,
         "fields": dict(fields)},
    )  # fmt: skip


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The fields whose value differs, each as ``{"from", "to"}``, in field order."""
    return {
        name: {"from": before.get(name), "to": after.get(name)}
        for name in dict.fromkeys([*before, *after])
        if before.get(name) != after.get(name)
    }


def record_change(
    session: Session,
    kind: str,
    *,
    key_id: int | None,
    subject: tuple[str, str],
    changed: Mapping[str, Mapping[str, Any]],
    meter_id: str | None = None,
    by: str | None = None,
) -> Event:
    """The audit event of one change (``subject``: what was changed, e.g. ("customer", "c1"));
    ``by``: who, when not an admin key or the command line (``provider:<id>``)."""
    what, ident = subject
    who = f"API key {key_id}" if key_id is not None else "the command line"
    reason = f"{what} {ident}: {', '.join(changed)} changed by {who}"
    role = by or ("admin" if key_id is not None else "cli")
    data = {"by": role, "key_id": key_id, what: ident, "changes": dict(changed)}
    return record_audit(session, kind, key_actor(key_id), reason, data, meter_id=meter_id)


def history(
    session: Session, kind: str, what: str, ident: str, *, before: int | None, limit: int
) -> list[Event]:
    """The audit events of ``kind`` about record ``ident`` (``data[what]``), newest first.
    Changes are rare next to the other events, so the kind's rows are read by id and matched
    here (the events table has no column per record kind)."""
    stmt = select(Event).where(Event.kind == kind)
    if before is not None:
        stmt = stmt.where(col(Event.id) < before)
    found: list[Event] = []
    for event in session.exec(stmt.order_by(col(Event.id).desc())):
        if (event.data or {}).get(what) == ident:
            found.append(event)
            if len(found) == limit:
                break
    return found


def actor_filter(actor: str) -> tuple[str, bool]:
    """A filter on ``actor``: an exact actor ("key:7") or a kind ("key", "gateway", "cli"):
    (value, is_prefix)."""
    if actor in ACTOR_KINDS and actor != CLI:
        return f"{actor}:", True
    return actor, False


def trail(
    session: Session,
    *,
    kind: str | None = None,
    actor: str | None = None,
    meter: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[Event]:
    """Audited events, newest first; ``before`` (an event id) pages on."""
    stmt = select(Event).where(col(Event.actor).is_not(None))
    if kind:
        stmt = stmt.where(Event.kind == kind)
    if actor:
        value, prefix = actor_filter(actor)
        if prefix:
            stmt = stmt.where(col(Event.actor).startswith(value, autoescape=True))
        else:
            stmt = stmt.where(Event.actor == value)
    if meter:
        stmt = stmt.where(Event.meter_id == meter)
    if since is not None:
        stmt = stmt.where(col(Event.at) >= since)
    if until is not None:
        stmt = stmt.where(col(Event.at) < until)
    if before is not None:
        stmt = stmt.where(col(Event.id) < before)
    return list(session.exec(stmt.order_by(col(Event.id).desc()).limit(limit)).all())
