"""Usage postings straight into a real ledger for billing tests: each record's lines are the
seed tariff's per-provider shares of its energy, posted by ``hub.ledger.post_usage_batch``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from hub import ledger
from hub.db import run_tx, session_scope
from hub.ledger import UsagePosting, provider_account_id
from hub.models import JournalLine

RATES = {"gen": 12, "grid": 5, "retail": 2}  # minor units per kWh (a simple test tariff)


def post_usage(engine: Engine, payer: tuple[str, str], seq: int, at: datetime, wh: int, *,
               rates: dict[str, int] | None = None, tariff: str = "std") -> int:  # fmt: skip
    """One usage record of ``wh`` ending at ``at`` on ``payer`` (meter, customer); ``rates``:
    minor units per kWh per provider (default ``RATES``). Returns its debit."""
    meter, customer = payer
    shares = {p: r * wh // 1000 for p, r in (rates or RATES).items()}
    debit = sum(shares.values())
    lines = [(customer, -debit)] + [(provider_account_id(p), v) for p, v in shares.items() if v]
    start = seq * 1000

    def work(session: Session) -> None:
        result = ledger.post_usage_batch(session, [UsagePosting(
            meter_id=meter, seq=seq, import_start=start, import_end=start + wh,
            lines=lines if debit else [], currency="USD", interval_start=at - timedelta(hours=1),
            interval_end=at, metadata={"tariff": tariff, "version": 1, "energy": wh})])  # fmt: skip
        assert result.posted, result

    run_tx(engine, work)
    return debit


def customer_lines(engine: Engine, customer: str) -> list[Any]:
    with session_scope(engine, write=False) as session:
        stmt = select(JournalLine.entry_id, JournalLine.amount).where(
            JournalLine.account_id == customer
        )
        return list(session.execute(stmt))
