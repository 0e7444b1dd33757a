"""Read side of the ledger: balances, an account's lines, provider statements and balances."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from hub.errors import NotFoundError, UnknownAccountError
from hub.ledger.sql import Executor, accounts, conn_of, entries, lines, providers


@dataclass(frozen=True)
class AccountView:
    id: str
    name: str
    kind: str
    currency: str
    balance: int
    floor: int | None


@dataclass(frozen=True)
class LineView:
    line_id: int
    entry_id: int
    kind: str
    amount: int  # + credit to the account, - debit
    currency: str
    created_at: datetime
    effective_at: datetime
    memo: str
    meter_id: str | None
    seq: int | None


@dataclass(frozen=True)
class LinePage:
    items: list[LineView]
    next_before: int | None  # pass as ``before`` for the next (older) page; None: no more


@dataclass(frozen=True)
class ProviderBalance:
    id: str
    name: str
    tier: str
    account_id: str
    currency: str
    balance: int


@dataclass(frozen=True)
class ProviderStatement:
    provider_id: str
    account_id: str
    currency: str
    start: datetime
    end: datetime
    opening: int  # balance from lines effective before ``start``
    closing: int  # opening + every line effective in [start, end)
    totals: dict[str, int]  # net per entry kind within the period
    lines: list[LineView]  # oldest first


_LINE_COLS = (lines.c.id, lines.c.entry_id, entries.c.kind, lines.c.amount, entries.c.currency,
              entries.c.created_at, entries.c.effective_at, entries.c.memo, entries.c.meter_id,
              entries.c.seq)  # fmt: skip


def _line(row: Any) -> LineView:
    return LineView(*row)


def get_account(db: Executor, account_id: str) -> AccountView:
    cols = (accounts.c.id, accounts.c.name, accounts.c.kind, accounts.c.currency,
            accounts.c.balance, accounts.c.floor)  # fmt: skip
    row = conn_of(db).execute(select(*cols).where(accounts.c.id == account_id)).first()
    if row is None:
        raise UnknownAccountError(account_id)
    return AccountView(*row)


def account_lines(
    db: Executor, account_id: str, *, limit: int = 50, before: int | None = None
) -> LinePage:
    """An account's lines, newest first; ``before`` is a line id cursor from the last page."""
    get_account(db, account_id)
    limit = max(1, min(limit, 500))
    stmt = select(*_LINE_COLS).join(entries, entries.c.id == lines.c.entry_id)
    stmt = stmt.where(lines.c.account_id == account_id)
    if before is not None:
        stmt = stmt.where(lines.c.id < before)
    rows = conn_of(db).execute(stmt.order_by(lines.c.id.desc()).limit(limit + 1)).all()
    items = [_line(r) for r in rows[:limit]]
    return LinePage(items, items[-1].line_id if len(rows) > limit else None)


def provider_balances(db: Executor) -> list[ProviderBalance]:
    stmt = (
        select(providers.c.id, providers.c.name, providers.c.tier, providers.c.account_id,
               accounts.c.currency, accounts.c.balance)
        .join(accounts, accounts.c.id == providers.c.account_id)
        .order_by(providers.c.id)
    )  # fmt: skip
    return [ProviderBalance(*row) for row in conn_of(db).execute(stmt)]


def provider_statement(
    db: Executor, provider_id: str, start: datetime, end: datetime
) -> ProviderStatement:
    """What a provider was settled, by ``effective_at`` in [start, end)."""
    conn = conn_of(db)
    prov = conn.execute(select(providers).where(providers.c.id == provider_id)).first()
    if prov is None:
        raise NotFoundError("provider", provider_id)
    account = get_account(conn, prov.account_id)
    joined = lines.join(entries, entries.c.id == lines.c.entry_id)
    mine = lines.c.account_id == account.id
    opening = conn.execute(
        select(func.coalesce(func.sum(lines.c.amount), 0))
        .select_from(joined).where(mine, entries.c.effective_at < start)
    ).scalar_one()  # fmt: skip
    in_period = (mine, entries.c.effective_at >= start, entries.c.effective_at < end)
    rows = conn.execute(
        select(*_LINE_COLS).select_from(joined).where(*in_period).order_by(lines.c.id)
    ).all()
    items = [_line(r) for r in rows]
    totals: dict[str, int] = {}
    for item in items:
        totals[item.kind] = totals.get(item.kind, 0) + item.amount
    closing = int(opening) + sum(totals.values())
    return ProviderStatement(provider_id, account.id, account.currency, start, end,
                             int(opening), closing, totals, items)  # fmt: skip
