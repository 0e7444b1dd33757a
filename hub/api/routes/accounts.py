"""Accounts: create (admin), read and list lines and notifications (the customer's own,
operator, admin), top up.

A top-up needs an ``Idempotency-Key`` header: the same key with the same body answers the
first result again and moves no money; the same key with another body answers 409. A customer
key may top up its own account only when ``customer_topups`` is on (default off: 403).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query
from sqlmodel import Session

from hub.api.deps import (
    Admin,
    AnyRole,
    ContextDep,
    CustomerOrAdmin,
    ForbiddenError,
    SessionDep,
    ensure_account,
    write_created,
)
from hub.api.jsonbody import HubRoute
from hub.api.schemas import (
    MAX_ID,
    AccountIn,
    AccountOut,
    EntriesPage,
    EntryLine,
    NotificationOut,
    NotificationsOut,
    TopupIn,
    TopupOut,
)
from hub.errors import NotFoundError
from hub.ledger import account_lines
from hub.ledger.accounts import open_account
from hub.models import Account, AccountKind, Role
from hub.money import major
from hub.services.notifications import notifications
from hub.services.topups import topup

router = APIRouter(prefix="/accounts", tags=["accounts"], route_class=HubRoute)

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=100,
        description="1 to 100 characters, unique per top-up",
    ),
]


def account_out(session: Session, account_id: str) -> AccountOut:
    account = session.get(Account, account_id)
    if account is None:
        raise NotFoundError("account", account_id)
    return AccountOut(
        id=account.id,
        balance=major(account.balance, account.currency),
        currency=account.currency,
        name=account.name,
        kind=account.kind,
    )


@router.post("", status_code=201, response_model=AccountOut)
def create(body: AccountIn, ctx: ContextDep, who: Admin) -> AccountOut:
    def work(session: Session) -> AccountOut:
        open_account(
            session, body.id, name=body.name, kind=AccountKind(body.kind), currency=ctx.currency
        )
        return account_out(session, body.id)

    return write_created(ctx.engine, work, who, ("account", body.id), body.model_dump(mode="json"))


@router.get("/{account_id}", response_model=AccountOut)
def get(account_id: str, session: SessionDep, who: AnyRole) -> AccountOut:
    ensure_account(who, account_id)
    return account_out(session, account_id)


@router.get("/{account_id}/entries", response_model=EntriesPage)
def entries(
    account_id: str,
    session: SessionDep,
    who: AnyRole,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="line id cursor (next_before)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> EntriesPage:
    ensure_account(who, account_id)
    page = account_lines(session, account_id, before=before, limit=limit)
    items = [
        EntryLine(
            line_id=r.line_id,
            entry_id=r.entry_id,
            kind=r.kind,
            amount=major(r.amount, r.currency),
            at=r.effective_at,
            memo=r.memo,
            meter=r.meter_id,
            seq=r.seq,
        )
        for r in page.items
    ]
    return EntriesPage(items=items, next_before=page.next_before)


@router.get("/{account_id}/notifications", response_model=NotificationsOut)
def list_notifications(
    *,
    account_id: str,
    session: SessionDep,
    ctx: ContextDep,
    who: AnyRole,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="event id cursor (next_before)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> NotificationsOut:
    ensure_account(who, account_id)
    found = notifications(
        session, account_id, topup_url=ctx.settings.topup_url, before=before, limit=limit
    )
    amount = major(found.reconnect_amount, found.currency)
    items = [
        NotificationOut(
            id=n.id,
            kind=n.kind,
            meter=n.meter_id,
            reason=n.reason,
            at=n.at,
            reconnect_amount=amount,
            topup_url=found.topup_url,
        )
        for n in found.items
    ]
    return NotificationsOut(
        account=found.account_id,
        balance=major(found.balance, found.currency),
        currency=found.currency,
        reconnect_amount=amount,
        topup_url=found.topup_url,
        items=items,
        next_before=found.next_before,
    )


@router.post("/{account_id}/topups", status_code=201, response_model=TopupOut)
def create_topup(
    account_id: str,
    body: TopupIn,
    ctx: ContextDep,
    who: CustomerOrAdmin,
    idempotency_key: IdempotencyKey,
) -> TopupOut:
    if who.role is Role.CUSTOMER and not ctx.settings.customer_topups:
        raise ForbiddenError(
            "customer keys may not top up on this hub (SMSA_HUB_CUSTOMER_TOPUPS is off); "
            "pay through a payment provider"
        )
    ensure_account(who, account_id)
    result = topup(
        ctx.runtime,
        account_id,
        body.amount,
        reference=body.reference,
        currency=body.currency,
        idempotency_key=idempotency_key,
        metadata={"key_id": who.key_id},
    )
    return TopupOut(
        id=result.entry_id,
        amount=major(result.amount, result.currency),
        balance=major(result.balance, result.currency),
        currency=result.currency,
        account=result.account_id,
        payment=result.payment,
    )
