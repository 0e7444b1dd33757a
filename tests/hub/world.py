"""A small settlement world for ledger tests: providers, customers, a gateway and meters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select
from sqlmodel import Session

from hub import ledger
from hub.db import run_tx
from hub.ledger.sql import accounts, entries, lines
from hub.models import Gateway, Meter, Tier

CURRENCY = "USD"


@dataclass(frozen=True)
class World:
    tag: str
    providers: list[str]  # provider account ids
    customers: list[str]  # customer account ids
    meters: list[str]
    currency: str = CURRENCY


def make_world(engine: Engine, n_providers: int = 3, n_customers: int = 2) -> World:
    """Fresh parties with unique ids, so many worlds can share one database."""
    tag = uuid.uuid4().hex[:8]

    def work(session: Session) -> World:
        provs = [
            ledger.create_provider(session, f"p{i}-{tag}", f"Provider {i}", tier, CURRENCY)
            for i, tier in zip(range(n_providers), list(Tier) * 3, strict=False)
        ]
        custs = [
            ledger.create_customer(session, f"c{i}-{tag}", f"Customer {i}", CURRENCY)
            for i in range(n_customers)
        ]
        session.add(Gateway(id=f"gw-{tag}", command_key="00" * 32, mqtt_username=f"gw-{tag}",
                            mqtt_password_hash="x"))  # fmt: skip
        meters = [f"m{i}-{tag}" for i in range(n_customers)]
        for meter_id, customer in zip(meters, custs, strict=True):
            session.add(Meter(id=meter_id, gateway_id=f"gw-{tag}", customer_id=customer))
        return World(tag, provs, custs, meters)

    return run_tx(engine, work)


def fund(engine: Engine, w: World, amount: int) -> None:
    """Top up every customer of ``w`` by ``amount`` minor units."""

    def work(session: Session) -> None:
        for c in w.customers:
            ledger.post_topup(session, c, amount, idempotency_key=f"fund-{w.tag}-{c}")

    run_tx(engine, work)


def failed(report: dict[str, Any]) -> dict[str, Any]:
    """The failing checks of an invariant report, for assertion messages."""
    return {k: v["detail"] for k, v in report["checks"].items() if not v["ok"]}


def snapshot(engine: Engine) -> tuple[dict[str, int], int, int]:
    """(balance per account, number of entries, number of lines)."""
    with engine.connect() as conn:
        balances = {
            r.id: r.balance for r in conn.execute(select(accounts.c.id, accounts.c.balance))
        }
        n_entries = conn.execute(select(func.count()).select_from(entries)).scalar_one()
        n_lines = conn.execute(select(func.count()).select_from(lines)).scalar_one()
    return balances, n_entries, n_lines
