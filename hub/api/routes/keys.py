"""API keys: ``DELETE /api-keys/{id}`` (admin) revokes one, audited (``hub.services.keys``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from sqlmodel import Session

from hub.api.deps import Admin, ContextDep, write
from hub.api.jsonbody import HubRoute
from hub.api.schemas import MAX_ID
from hub.services.keys import revoke

router = APIRouter(prefix="/api-keys", tags=["api-keys"], route_class=HubRoute)


@router.delete("/{key_id}", status_code=204, response_class=Response)
def delete(key_id: Annotated[int, Path(ge=1, le=MAX_ID)], ctx: ContextDep, who: Admin) -> Response:
    def work(session: Session) -> None:
        revoke(session, str(key_id), by=who.key_id)

    write(ctx.engine, work)
    return Response(status_code=204)
