"""POST /payments/callback/{provider}: a signed top-up from a payment provider (no API key;
the HMAC signature is the authentication). See ``hub.services.payments`` for the scheme.

GET /payments/{id} (the customer's own, operator, admin): how a payment was split among the
tiers (``hub.payments``). GET /payments?status=pending (operator, admin): payments held for a
third party's confirmation; POST /payments/{id}/verify asks the verifier again."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import AnyRole, ContextDep, Operator, SessionDep, client_address, ensure_account
from hub.api.jsonbody import HubRoute
from hub.api.schemas import ErrorOut, TopupOut
from hub.db import read_tx
from hub.errors import BodyTooLargeError, ConflictError
from hub.ledger.topups import TopupResult
from hub.money import major
from hub.payments.settings import PaymentSettings
from hub.payments.verify import UrlVerifier
from hub.payments.views import payment_document, payment_owner, pending_documents
from hub.services.held import confirm, current
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
    responses={
        202: {"description": "held until the provider's verification URL confirms it"},
        413: {"model": ErrorOut, "description": "body larger than 16 KiB"},
    },
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
) -> TopupOut | JSONResponse:
    body = await read_capped(request, MAX_BODY)
    try:
        result = await run_in_threadpool(
            handle_callback, ctx.runtime, provider, body, x_signature, x_timestamp
        )
    except SignatureError as exc:  # a failed authentication, limited per address
        raise ctx.auth_limiter.check(client_address(request), exc) from None
    if not isinstance(result, TopupResult):  # held for the provider's confirmation
        code = 201 if result.status == "credited" else 202
        return JSONResponse({"payment": int(result.id), "status": result.status}, code)
    return TopupOut(
        id=result.entry_id,
        amount=major(result.amount, result.currency),
        balance=major(result.balance, result.currency),
        currency=result.currency,
        account=result.account_id,
        payment=result.payment,
    )


PaymentId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("")
def list_payments(session: SessionDep, _: Operator, status: Literal["pending"] = "pending"
                  ) -> list[dict[str, Any]]:  # fmt: skip
    """Payments held pending: never credited until their verifier confirms them."""
    return pending_documents(session.connection())


@router.get("/{payment_id}")
def get_payment(payment_id: PaymentId, session: SessionDep, who: AnyRole) -> dict[str, Any]:
    conn = session.connection()
    ensure_account(who, payment_owner(conn, payment_id))
    return payment_document(conn, payment_id)


@router.post("/{payment_id}/verify")
def verify_again(payment_id: PaymentId, ctx: ContextDep, _: Operator) -> dict[str, Any]:
    """Ask a pending payment's verifier again (credits it only on a confirmation)."""
    row = current(ctx.runtime, payment_id)
    request = row.request or {}
    name = (f"billpay:{request.get('network')}" if row.channel == "billpay"
            else f"callback:{request.get('provider')}")  # fmt: skip
    verifier = PaymentSettings().verifier(name)
    if row.status == "pending":
        if not isinstance(verifier, UrlVerifier):
            raise ConflictError(f"payment {payment_id}: {name} has no verification URL")
        confirm(ctx.runtime, payment_id, verifier)
    with read_tx(ctx.engine) as conn:
        return payment_document(conn, payment_id)
