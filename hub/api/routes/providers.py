"""POST /providers (admin) and GET /providers/{id} (operator): the provider's settled balance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write_created
from hub.api.jsonbody import HubRoute
from hub.api.schemas import AwareInstant, EntryLine, ProviderIn, ProviderOut, StatementOut
from hub.errors import InvalidInputError, NotFoundError
from hub.ledger import create_provider, provider_statement
from hub.models import Account, Provider
from hub.money import major

router = APIRouter(prefix="/providers", tags=["providers"], route_class=HubRoute)
MAX_STATEMENT_LINES = 10_000


def provider_out(session: Session, provider_id: str) -> ProviderOut:
    provider = session.get(Provider, provider_id)
    if provider is None:
        raise NotFoundError("provider", provider_id)
    account = session.get(Account, provider.account_id)
    assert account is not None
    return ProviderOut(
        id=provider.id,
        name=provider.name,
        tier=provider.tier,
        account=account.id,
        balance=major(account.balance, account.currency),
        currency=account.currency,
    )


@router.post("", status_code=201, response_model=ProviderOut)
def create(body: ProviderIn, ctx: ContextDep, who: Admin) -> ProviderOut:
    def work(session: Session) -> ProviderOut:
        create_provider(session, body.id, body.name, body.tier, ctx.currency)
        return provider_out(session, body.id)

    return write_created(ctx.engine, work, who, ("provider", body.id), body.model_dump(mode="json"))


@router.get("", response_model=list[ProviderOut])
def list_providers(session: SessionDep, _: Operator) -> list[ProviderOut]:
    ids = session.exec(select(Provider.id).order_by(col(Provider.id))).all()
    return [provider_out(session, pid) for pid in ids]


@router.get("/{provider_id}/statement", response_model=StatementOut)
def statement(
    provider_id: str,
    session: SessionDep,
    _: Operator,
    start: Annotated[AwareInstant, Query(description="ISO 8601 with a zone, inclusive")],
    end: Annotated[AwareInstant, Query(description="ISO 8601 with a zone, exclusive")],
) -> StatementOut:
    """What the provider was settled in [start, end), by entry effective time."""
    if end <= start:
        raise InvalidInputError("query.end", "must be after start")
    st = provider_statement(session, provider_id, start, end)
    cur = st.currency
    return StatementOut(
        provider=st.provider_id,
        account=st.account_id,
        currency=cur,
        start=st.start,
        end=st.end,
        opening=major(st.opening, cur),
        closing=major(st.closing, cur),
        totals={k: major(v, cur) for k, v in st.totals.items()},
        lines=[
            EntryLine(
                line_id=r.line_id,
                entry_id=r.entry_id,
                kind=r.kind,
                amount=major(r.amount, cur),
                at=r.effective_at,
                memo=r.memo,
                meter=r.meter_id,
                seq=r.seq,
            )
            for r in st.lines[:MAX_STATEMENT_LINES]
        ],
    )


@router.get("/{provider_id}", response_model=ProviderOut)
def get(provider_id: str, session: SessionDep, _: Operator) -> ProviderOut:
    return provider_out(session, provider_id)
