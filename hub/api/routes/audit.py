"""GET /audit (admin): the audit trail (``hub.audit``), newest first, filtered and paged.

Filters: ``kind`` (``topup``, ``customer_changed``, ``usage_settled`` ...), ``actor`` (one
actor, ``key:7`` or ``gateway:gw-1``, or every actor of a kind: ``key``, ``gateway``, ``job``,
``provider``, ``hub``, ``cli``), ``meter``, ``since`` (inclusive) and ``until`` (exclusive).
Paging: ``limit`` entries, then ``?before=<next_before>`` for the older ones.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from hub.api.deps import Admin, SessionDep
from hub.api.jsonbody import HubRoute
from hub.api.schemas import MAX_ID, AuditEntryOut, AuditPage, AwareInstant
from hub.audit import trail
from hub.errors import InvalidInputError

router = APIRouter(prefix="/audit", tags=["audit"], route_class=HubRoute)

ACTOR = r"^[A-Za-z0-9._:-]{1,96}$"


@router.get("", response_model=AuditPage)
def list_audit(
    *,
    session: SessionDep,
    _: Admin,
    kind: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    actor: Annotated[str | None, Query(pattern=ACTOR, description="key:7, gateway, ...")] = None,
    meter: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[AwareInstant | None, Query(description="ISO 8601 with a zone")] = None,
    until: Annotated[AwareInstant | None, Query(description="ISO 8601 with a zone")] = None,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="event id cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    if since is not None and until is not None and until <= since:
        raise InvalidInputError("query.until", "must be after since")
    rows = trail(session, kind=kind, actor=actor, meter=meter, since=since, until=until,
                 before=before, limit=limit)  # fmt: skip
    items = [
        AuditEntryOut(
            id=e.id or 0,
            at=e.at,
            kind=e.kind,
            actor=e.actor or "",
            meter=e.meter_id,
            reason=e.reason,
            data=e.data,
        )
        for e in rows
    ]
    return AuditPage(items=items, next_before=items[-1].id if len(items) == limit else None)
