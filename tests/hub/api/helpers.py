"""Small helpers for API tests: ledger snapshots and error-location checks."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from hub.db import session_scope
from hub.ledger.sql import accounts, entries


def ledger_state(engine: Engine) -> tuple[int, dict[str, int]]:
    """(number of journal entries, balance of every account): equal means no money moved."""
    with session_scope(engine, write=False) as session:
        conn = session.connection()
        count = int(conn.execute(select(func.count()).select_from(entries)).scalar_one())
        rows = conn.execute(select(accounts.c.id, accounts.c.balance))
        balances = {r.id: int(r.balance) for r in rows}
    return count, balances


def error_fields(response: httpx.Response) -> list[str]:
    """The dotted ``loc`` of every error of a 422 answer (without the leading "body")."""
    detail: Any = response.json()["detail"]
    assert isinstance(detail, list), detail
    out = []
    for item in detail:
        loc = [str(p) for p in item["loc"]]
        out.append(".".join(loc[1:] if loc and loc[0] == "body" else loc))
    return out
