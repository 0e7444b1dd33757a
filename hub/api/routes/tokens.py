"""Offline top-up tokens (contract section 7, docs/tokens.md): vend (the customer's own
account, admin), read and cancel (operator, admin; a customer reads its own)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from hub.api.deps import AnyRole, ContextDep, CustomerOrAdmin, Operator, ensure_account
from hub.api.jsonbody import HubRoute
from hub.api.routes.accounts import IdempotencyKey
from hub.api.schemas import TokenIn, TokenOut
from hub.money import major
from hub.services.tokens import cancel_token, get_token, vend_token

router = APIRouter(tags=["tokens"], route_class=HubRoute)


def token_out(row: Any) -> TokenOut:
    m = row._mapping  # a Row's ``count`` is tuple.count: columns by name
    return TokenOut(id=m["id"], token=m["digits"], amount=major(int(m["amount"]), m["currency"]),
                    meter=m["meter_id"], account=m["account_id"], currency=m["currency"],
                    status=m["status"], redeemed=bool(m["redeemed"]))  # fmt: skip


@router.post("/accounts/{account_id}/tokens", status_code=201, response_model=TokenOut)
def vend(
    account_id: str,
    body: TokenIn,
    ctx: ContextDep,
    who: CustomerOrAdmin,
    idempotency_key: IdempotencyKey,
) -> TokenOut:
    """Debit the account and return the meter's next token; the same key again: the same
    token, nothing moved; the same key with another body: 409."""
    ensure_account(who, account_id)
    v = vend_token(ctx.runtime, account_id, body.amount, body.meter, idempotency_key,
                   key_id=who.key_id)  # fmt: skip
    return TokenOut(id=v.id, token=v.digits, amount=major(v.amount, v.currency), meter=v.meter_id,
                    account=v.account_id, currency=v.currency, status="vended")  # fmt: skip


@router.get("/tokens/{token_id}", response_model=TokenOut)
def read(token_id: str, ctx: ContextDep, who: AnyRole) -> TokenOut:
    row = get_token(ctx.runtime, token_id)
    ensure_account(who, row.account_id)
    return token_out(row)


@router.post("/tokens/{token_id}/cancel", response_model=TokenOut)
def cancel(token_id: str, ctx: ContextDep, who: Operator) -> TokenOut:
    """Refund a token never redeemed (the gateway refuses it from its next credit state);
    again: the same answer; a settled token: 409."""
    return token_out(cancel_token(ctx.runtime, token_id, key_id=who.key_id))
