"""A postpaid customer, two months of bills, a partial payment and an overpayment, on SQLite
and PostgreSQL: each payment's allocations per tier sum to it exactly (in proportion to the
bill's lines, oldest bill first), the bills become paid in order, the overpayment's credit is
carried to the next bill, and every ledger invariant holds."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from hub.billing.periods import Period
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.billing.views import bill_document, bill_owner
from hub.db import read_tx, run_tx
from hub.ledger.sql import accounts
from protocol.apportion import split
from tests.hub.billing.ledgerdata import RATES, post_usage
from tests.hub.payments.ledgerpay import document, invariants, pay, postpaid
from tests.hub.seed import seed_world

SETTINGS = BillingSettings(timezone="UTC")


def bill(engine: Engine, period: Period) -> dict[int, str]:
    """Bill ``period`` on the first day after it."""
    now = period.next().start(UTC)
    result = run_tx(engine, lambda s: run_billing(s.connection(), period, SETTINGS, now))
    with read_tx(engine) as conn:
        return {b: bill_owner(conn, b) for b in result.bills}


def doc(engine: Engine, bill_id: int) -> dict[str, Any]:
    with read_tx(engine) as conn:
        return bill_document(conn, bill_id)


def minor(text: object) -> int:
    return int(Decimal(str(text)) * 100)


def test_partial_then_overpayment_allocated_oldest_first(engine: Engine) -> None:
    world = seed_world(engine, meters_per_gateway=1, topup=0)
    ((meter, customer),) = world.customers.items()
    postpaid(engine, customer)
    jan = post_usage(engine, (meter, customer), 1, datetime(2027, 1, 10, tzinfo=UTC), 7_300)
    feb = post_usage(engine, (meter, customer), 10, datetime(2027, 2, 10, tzinfo=UTC), 4_100)
    (jan_bill,) = bill(engine, Period(2027, 1))
    (feb_bill,) = bill(engine, Period(2027, 2))
    jan_lines = {x["provider"]: minor(x["amount"]) for x in doc(engine, jan_bill)["lines"]}
    assert (
        sum(jan_lines.values()) == jan
        and doc(engine, feb_bill)["amount_due"] == f"{(jan + feb) / 100:.2f}"
    )

    partial = pay(
        engine, customer, 51, "p1", at=datetime(2027, 3, 5, tzinfo=UTC)
    )  # less than January: all of it to January
    first = document(engine, partial)
    parts = {a["provider"]: minor(a["amount"]) for a in first["allocations"]}
    assert {a["bill"] for a in first["allocations"]} == {jan_bill}
    assert sum(parts.values()) == 51 and first["credit"] == "0.00" and first["policy"] == "1"
    assert parts == {p: v for p, v in split(51, jan_lines).items() if v}  # in proportion
    assert (doc(engine, jan_bill)["status"], doc(engine, feb_bill)["status"]) == ("open", "open")

    over = pay(engine, customer, jan + feb - 51 + 77, "p2", at=datetime(2027, 3, 6, tzinfo=UTC))
    second = document(engine, over)
    assert [a["bill"] for a in second["allocations"]] == sorted(
        a["bill"] for a in second["allocations"]
    )
    assert (
        sum(minor(a["amount"]) for a in second["allocations"]) + minor(second["credit"])
        == jan + feb - 51 + 77
    )
    assert second["credit"] == "0.77"
    for bill_id, lines in ((jan_bill, jan_lines), (feb_bill, None)):
        paid: dict[str, int] = {}
        for payment in (first, second):
            for a in payment["allocations"]:
                if a["bill"] == bill_id:
                    paid[a["provider"]] = paid.get(a["provider"], 0) + minor(a["amount"])
        expected = lines or {
            x["provider"]: minor(x["amount"]) for x in doc(engine, bill_id)["lines"]
        }
        assert paid == expected  # every tier paid exactly what it charged
    assert (doc(engine, jan_bill)["status"], doc(engine, feb_bill)["status"]) == ("paid", "paid")

    mar = post_usage(engine, (meter, customer), 20, datetime(2027, 3, 10, tzinfo=UTC), 9_000)
    (mar_bill,) = bill(engine, Period(2027, 3))
    march = doc(engine, mar_bill)
    assert minor(march["payments"]) == jan + feb + 77 and minor(march["amount_due"]) == mar - 77
    carried = document(engine, over)  # its credit went to March's tiers when March was billed
    assert carried["credit"] == "0.00"
    credit_parts = [a for a in carried["allocations"] if a["source"] == "credit"]
    assert {a["bill"] for a in credit_parts} == {mar_bill}
    assert sum(minor(a["amount"]) for a in credit_parts) == 77
    assert march["status"] == "open"

    with read_tx(engine) as conn:
        collected = dict(conn.execute(select(accounts.c.id, accounts.c.balance)
                                      .where(accounts.c.id.like("collected:%"))).all())  # fmt: skip
    assert sum(collected.values()) == jan + feb + 77 and set(collected) == {
        f"collected:{p}" for p in RATES
    }
    assert invariants(engine) == {}
