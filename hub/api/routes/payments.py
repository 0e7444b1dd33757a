"""POST /payments/callback/{provider}: a signed top-up from a payment provider (no API key;
the HMAC signature is the authentication). See ``hub.services.payments`` for the scheme."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ContextDep, client_address
from hub.api.jsonbody import HubRoute
from hub.api.schemas import ErrorOut, TopupOut
from hub.errors import BodyTooLargeError
from hub.money import major
from hub.services.payments import MAX_BODY, SignatureError, handle_callback

router = APIRouter(prefix="/payments", tags=["payments"], route_class=HubRoute)


async def read_capped(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) past ``limit`` bytes without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/callback/{provider}",
    status_code=201,
    response_model=TopupOut,
    responses={413: {"model": ErrorOut, "description": "body larger than 16 KiB"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["transaction_id", "account", "amount"],
                        "properties": {
                            "transaction_id": {"type": "string"},
                            "account": {"type": "string"},
                            "amount": {"type": "string", "examples": ["12.50"]},
                            "currency": {"type": "string"},
                            "reference": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def callback(
    provider: str,
    request: Request,
    ctx: ContextDep,
    x_signature: Annotated[str | None, Header()] = None,
    x_timestamp: Annotated[str | None, Header()] = None,
) -> TopupOut:
    body = await read_capped(request, MAX_BODY)
    try:
        result = await run_in_threadpool(
            handle_callback, ctx.runtime, provider, body, x_signature, x_timestamp
        )
    except SignatureError as exc:  # a failed authentication, limited per address
        raise ctx.auth_limiter.check(client_address(request), exc) from None
    return TopupOut(
        id=result.entry_id,
        amount=major(result.amount, result.currency),
        balance=major(result.balance, result.currency),
        currency=result.currency,
        account=result.account_id,
    )
