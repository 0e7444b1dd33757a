"""Charges straight into a real ledger for payment tests: a postpaid customer and standing
charges from several providers (one entry per month, no meter needed)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select
from sqlmodel import Session

from hub import ledger
from hub.billing.customers import set_billing
from hub.db import run_tx
from hub.ledger.sql import accounts
from hub.models import EntryKind, Tier

TIERS = {"gen": Tier.GENERATION, "grid": Tier.DISTRIBUTION, "ret": Tier.RETAIL,
         "plat": Tier.PLATFORM}  # fmt: skip


def providers(engine: Engine, ids: tuple[str, ...] = tuple(TIERS)) -> None:
    def work(session: Session) -> None:
        have = set(session.connection().execute(select(accounts.c.id)).scalars())
        for p in ids:
            if ledger.provider_account_id(p) not in have:
                ledger.create_provider(session, p, p, TIERS[p], "USD")

    run_tx(engine, work)


def customer(engine: Engine, customer_id: str) -> None:
    run_tx(engine, lambda s: add_customer(s, customer_id))


def add_customer(session: Session, customer_id: str) -> None:
    """A postpaid customer with no floor, in the caller's transaction."""
    ledger.create_customer(session, customer_id, customer_id, "USD")
    ledger.set_floor(session, customer_id, None)
    set_billing(session, customer_id, "postpaid")


def charge(engine: Engine, customer_id: str, at: datetime, shares: dict[str, int]) -> int:
    """One standing charge of ``shares`` (provider: minor units) at ``at``; its total."""
    return run_tx(engine, lambda s: post_charge(s, customer_id, at, shares))


def post_charge(session: Session, customer_id: str, at: datetime, shares: dict[str, int]) -> int:
    """``charge`` in the caller's transaction."""
    total = sum(shares.values())
    lines = [(customer_id, -total)] + [(ledger.provider_account_id(p), v)
                                       for p, v in shares.items() if v]  # fmt: skip
    if total:
        ledger.post_entry(session, EntryKind.STANDING, lines, "USD", effective_at=at,
                          enforce_floor=False,
                          metadata={"service": "electricity", "quantity": 30})  # fmt: skip
    return total
