"""Postpaid customers with one month billed, for the remittance and bill-payment tests: each
has a standing charge from two providers in November 2026 and its bill from a billing run."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine, select
from sqlmodel import Session

from hub.billing.store import bills
from hub.db import read_tx, run_tx
from tests.hub.payments.charges import add_customer, post_charge, providers

PERIOD = "2026-11"


def billed_customers(engine: Engine, client: httpx.Client, admin: str, n: int,
                     prefix: str = "pp") -> dict[str, Any]:  # fmt: skip
    """``n`` postpaid customers billed for November 2026: {customer: its bill row}."""
    providers(engine, ("gen", "ret"))
    ids = [f"{prefix}{i:03d}" for i in range(n)]

    def work(session: Session) -> None:
        for i, who in enumerate(ids):
            add_customer(session, who)
            shares = {"gen": 1000 + i, "ret": 333}
            post_charge(session, who, datetime(2026, 11, 10, tzinfo=UTC), shares)

    run_tx(engine, work)
    r = client.post("/api/v1/billing/runs", json={"period": PERIOD},
                    headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
    assert r.status_code in (200, 201), r.text
    with read_tx(engine) as conn:
        rows = conn.execute(select(bills).where(bills.c.customer_id.in_(ids))).all()
    return {row.customer_id: row for row in rows}
