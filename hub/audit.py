"""Who changed what after creation (issue 15, item 5): one audit event per change.

Every change the admin API makes to something it created is one row of the ``events`` table,
in the change's own transaction: its kind names what changed (``customer_changed``,
``meter_changed``, ``api_key_revoked``, ``gateway_rotated``); ``data`` says who (``by:
"admin"`` and the API key's ``key_id``, or ``by: "cli"`` for the command line), which record
(``customer``, ``meter``, ``api_key`` or ``gateway``) and, per field, ``{"from", "to"}`` (a
meter's pricing change also ``"at"``: from when; no secret is ever written). A customer's
changes are read by ``GET /customers/{id}/history``, a meter's by ``GET
/events?kind=meter_changed&meter=ID``, a key's revocation and a gateway's rotation by ``GET
/events?kind=api_key_revoked`` or ``gateway_rotated``. A request that changes nothing records
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, select

from hub.events import record_event
from hub.models import Event

CUSTOMER_CHANGED = "customer_changed"
KEY_REVOKED = "api_key_revoked"
GATEWAY_ROTATED = "gateway_rotated"
METER_CHANGED = "meter_changed"


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
) -> Event:
    """The audit event of one change (``subject``: what was changed, e.g. ("customer", "c1"))."""
    what, ident = subject
    by = f"API key {key_id}" if key_id is not None else "the command line"
    reason = f"{what} {ident}: {', '.join(changed)} changed by {by}"
    data = {"by": "admin" if key_id is not None else "cli", "key_id": key_id, what: ident,
            "changes": dict(changed)}  # fmt: skip
    return record_event(session, kind, meter_id=meter_id, reason=reason, data=data)


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
