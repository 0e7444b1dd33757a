"""Bill-payment networks (contract section 6, claim 14): GET /billpay/bills?reference=,
POST /billpay/payments (a ``billpay`` key: the network it is bound to), GET
/billpay/reconciliation?date= (billpay: its own network; operator, admin: ``network=``).
The use cases are in ``hub.services.billpay``."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from hub.api.deps import ContextDep, ForbiddenError, client_address, require
from hub.api.jsonbody import HubRoute
from hub.api.routes.payments import read_capped
from hub.api.schemas import ErrorOut
from hub.errors import InvalidInputError
from hub.keys import Principal
from hub.models import ID_PATTERN, Role
from hub.services import billpay
from hub.services.payments import MAX_BODY, SignatureError

router = APIRouter(prefix="/billpay", tags=["billpay"], route_class=HubRoute)

Network = Annotated[Principal, Depends(require(Role.BILLPAY))]
Reconciler = Annotated[Principal, Depends(require(Role.BILLPAY, Role.OPERATOR))]


def network_of(who: Principal) -> str:
    if who.role is not Role.BILLPAY or not (who.account_id or "").startswith("billpay:"):
        raise ForbiddenError("only a bill-payment network's key may do this")
    return (who.account_id or "").removeprefix("billpay:")


@router.get("/bills")
def fetch_bill(reference: Annotated[str, Query(max_length=40)], ctx: ContextDep,
               _: Network) -> dict[str, Any]:  # fmt: skip
    return billpay.fetch(ctx.runtime, reference)


@router.post(
    "/payments",
    status_code=201,
    responses={
        202: {"description": "held until the network's verification URL confirms it"},
        401: {"model": ErrorOut, "description": "bad or missing X-Signature"},
        404: {"model": ErrorOut, "description": "unknown reference"},
        409: {"model": ErrorOut, "description": "bill already paid, or network_txn reused"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["reference", "amount", "network_txn", "paid_at"],
                        "properties": {
                            "reference": {"type": "string"},
                            "amount": {"type": "string", "examples": ["12.50"]},
                            "network_txn": {"type": "string"},
                            "paid_at": {"type": "string", "format": "date-time"},
                        },
                    }
                }
            },
        }
    },
)
async def post_payment(
    request: Request,
    ctx: ContextDep,
    who: Network,
    x_signature: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    network = network_of(who)
    body = await read_capped(request, MAX_BODY)
    try:
        answer, credited = await run_in_threadpool(
            billpay.pay, ctx.runtime, network, who.key_id, body, x_signature
        )
    except SignatureError as exc:
        raise ctx.auth_limiter.check(client_address(request), exc) from None
    return JSONResponse(answer, status_code=201 if credited else 202)


CSV = {200: {"content": {"text/csv": {}}, "description": "the day's network payments"}}


@router.get("/reconciliation", response_class=Response, responses=CSV)  # type: ignore[arg-type]
def reconcile(
    ctx: ContextDep,
    who: Reconciler,
    day: Annotated[date, Query(alias="date")],
    network: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> Response:
    if who.role is Role.BILLPAY:
        network = network_of(who)
    elif not network:
        raise InvalidInputError("network", "an operator names the network")
    if not date(2000, 1, 1) <= day <= date(9998, 12, 31):
        raise InvalidInputError("date", "out of range")
    text = billpay.reconciliation(ctx.runtime, network, day)
    name = f'attachment; filename="{network}-{day}.csv"'
    return Response(text, media_type="text/csv", headers={"Content-Disposition": name})
