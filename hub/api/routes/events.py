"""Events: query (operator), live Server-Sent Events, and stream tokens for browsers.

``GET /events/stream`` sends each event as ``id: <event id>`` + ``data: <json>``; a client
reconnecting with ``Last-Event-ID`` (or ``?last_event_id=``) gets every event after that id
from the database, then live ones. Without either it starts with events newer than now.
Authentication: ``Authorization: Bearer <key>``, or ``?token=`` from
``POST /events/stream-token`` (a browser's EventSource cannot send headers; the token is
short-lived and names the key, so the key itself never appears in a URL or access log).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from hub.api.deps import ContextDep, Operator, SessionDep, StreamPrincipal, make_stream_token
from hub.api.jsonbody import HubRoute
from hub.api.schemas import MAX_ID, EventOut, Instant, StreamToken
from hub.errors import InvalidInputError
from hub.events import query_events, sse_stream

router = APIRouter(prefix="/events", tags=["events"], route_class=HubRoute)


@router.get("", response_model=list[EventOut])
def list_events(
    *,
    session: SessionDep,
    _: Operator,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    exclude: Annotated[list[str] | None, Query(description="kinds to leave out (repeat)")] = None,
    meter: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[Instant | None, Query(description="ISO 8601 instant, inclusive")] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="only events with a larger id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> list[EventOut]:
    rows = query_events(
        session,
        kind=kind,
        exclude=frozenset(exclude or ()),
        meter=meter,
        since=since,
        after_id=after,
        limit=limit,
        newest_first=order == "desc",
    )
    return [
        EventOut(id=e.id or 0, kind=e.kind, meter=e.meter_id, reason=e.reason, at=e.at, data=e.data)
        for e in rows
    ]


@router.post("/stream-token", response_model=StreamToken)
def stream_token(ctx: ContextDep, who: Operator) -> StreamToken:
    token, expires = make_stream_token(ctx, who)
    return StreamToken(token=token, expires_at=expires)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE"}},
)
async def stream(
    *,
    request: Request,
    ctx: ContextDep,
    _: StreamPrincipal,
    kind: Annotated[list[str] | None, Query(description="repeat to allow several kinds")] = None,
    exclude: Annotated[list[str] | None, Query(description="kinds to leave out (repeat)")] = None,
    meter: Annotated[str | None, Query(max_length=64)] = None,
    last_event_id: Annotated[int | None, Query(ge=0, le=MAX_ID)] = None,
    last_event_id_header: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    after = last_event_id
    if after is None and last_event_id_header and last_event_id_header.strip().isdigit():
        after = int(last_event_id_header.strip())
        if after > MAX_ID:
            raise InvalidInputError("header.Last-Event-ID", f"must be at most {MAX_ID}")
    body = sse_stream(
        ctx.engine,
        after_id=after,
        kinds=frozenset(kind or ()),
        exclude=frozenset(exclude or ()),
        meter=meter,
        poll_s=ctx.settings.sse_poll_s,
        keepalive_s=ctx.settings.sse_keepalive_s,
        disconnected=request.is_disconnected,
        stopping=ctx.stopping,
        bell=ctx.bell,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)
