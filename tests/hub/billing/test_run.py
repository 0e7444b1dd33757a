"""Billing runs on a real ledger (SQLite and PostgreSQL): bill lines sum to the charges, the
charges equal the ledger, every tier line equals that provider's postings, late usage becomes a
dated adjustment on the next bill, an issued bill never changes, and bill numbers are gapless
under concurrent runs."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, func, select, text, update

from hub.billing.jobs import billing_job
from hub.billing.periods import Period
from hub.billing.run import PeriodOpenError, RunResult, run_billing
from hub.billing.settings import BillingSettings
from hub.billing.store import bills, get_bill
from hub.db import read_tx, run_tx
from hub.errors import DatabaseError
from hub.ledger import post_topup
from tests.hub.billing.ledgerdata import RATES, post_usage
from tests.hub.seed import seed_world

JAN, FEB, MAR = Period(2027, 1), Period(2027, 2), Period(2027, 3)
NOW = datetime(2027, 4, 2, tzinfo=UTC)
SETTINGS = BillingSettings(timezone="UTC")
TIER = {"gen": "generation", "grid": "distribution", "retail": "retail"}


def bill(engine: Engine, period: Period, now: datetime = NOW) -> RunResult:
    return run_tx(engine, lambda s: run_billing(s.connection(), period, SETTINGS, now))


def bill_of(engine: Engine, result: RunResult, customer: str) -> tuple[object, list[object]]:
    with read_tx(engine) as conn:
        for bill_id in result.bills:
            found = get_bill(conn, bill_id)
            assert found is not None
            if found[0].customer_id == customer:
                return found
    raise AssertionError(f"no bill for {customer}")


def test_bills_equal_the_ledger_and_late_usage_is_adjusted(engine: Engine) -> None:
    world = seed_world(engine, meters_per_gateway=2, topup=0)
    (m1, c1), (m2, c2) = sorted(world.customers.items())
    run_tx(
        engine,
        lambda s: post_topup(
            s, c1, 5000, idempotency_key="jan", effective_at=datetime(2027, 1, 2, tzinfo=UTC)
        ),
    )
    jan = [
        post_usage(engine, (m1, c1), 1, datetime(2027, 1, 10, tzinfo=UTC), 1500),
        post_usage(engine, (m1, c1), 2, datetime(2027, 1, 31, 23, 59, tzinfo=UTC), 2500),
    ]
    post_usage(engine, (m1, c1), 4, datetime(2027, 2, 3, tzinfo=UTC), 1000)
    post_usage(engine, (m2, c2), 1, datetime(2027, 1, 5, tzinfo=UTC), 7000)

    first = bill(engine, JAN)
    assert first.created and len(first.bills) == 2
    row, lines = bill_of(engine, first, c1)
    charges = [ln for ln in lines if ln.kind != "payment"]
    assert sum(ln.amount for ln in charges) == row.charges == sum(jan)
    for provider, rate in RATES.items():
        (line,) = [ln for ln in charges if ln.provider_id == provider]
        assert line.tier == TIER[provider] and line.unit == "kWh" and line.quantity == 4000
        assert line.amount == rate * 1500 // 1000 + rate * 2500 // 1000
    assert row.status == "statement" and row.amount_due == 0 and row.number == "SMSA-2027-000001"
    assert row.payments == 5000 and row.balance == sum(jan) - 5000

    again = bill(engine, JAN)  # the same period again: the same bills, nothing new
    assert not again.created and again.bills == first.bills

    late = post_usage(engine, (m1, c1), 3, datetime(2027, 1, 31, 23, 59, 30, tzinfo=UTC), 500)
    second = bill(engine, FEB)
    row2, lines2 = bill_of(engine, second, c1)
    adjustments = [ln for ln in lines2 if ln.kind == "adjustment"]
    assert {ln.for_period for ln in adjustments} == {"2027-01"}
    assert sum(ln.amount for ln in adjustments) == late
    assert row2.charges == late + sum(r * 1000 // 1000 for r in RATES.values())
    assert row2.balance_forward == row.balance
    row_again, lines_again = bill_of(engine, first, c1)  # the issued bill is as it was
    assert (row_again.charges, len(lines_again)) == (row.charges, len(lines))
    # every ledger charge billed exactly once across both bills
    with read_tx(engine) as conn:
        billed = conn.execute(select(func.sum(bills.c.charges))
                              .where(bills.c.customer_id == c1)).scalar_one()  # fmt: skip
    assert billed == sum(jan) + late + sum(RATES.values())


def test_an_issued_bill_cannot_be_changed(engine: Engine) -> None:
    seed_world(engine, meters_per_gateway=1, topup=0)
    result = bill(engine, JAN)
    with pytest.raises(DatabaseError, match="append-only"):
        run_tx(engine, lambda s: s.execute(update(bills).values(charges=1)))
    assert result.bills


def test_an_open_period_is_refused(engine: Engine) -> None:
    seed_world(engine, meters_per_gateway=1, topup=0)
    with pytest.raises(PeriodOpenError):
        bill(engine, MAR, now=datetime(2027, 3, 31, 23, tzinfo=UTC))


def test_postpaid_bill_has_amount_due_reference_and_scan_line(engine: Engine) -> None:
    world = seed_world(engine, meters_per_gateway=1, topup=0)
    ((meter, customer),) = world.customers.items()
    run_tx(engine, lambda s: s.execute(
        text("UPDATE customers SET flags = :f WHERE id = :c"),
        {"f": '{"billing": "postpaid"}', "c": customer}))  # fmt: skip
    debit = post_usage(engine, (meter, customer), 1, datetime(2027, 1, 10, tzinfo=UTC), 3000)
    row, _ = bill_of(engine, bill(engine, JAN), customer)
    assert (row.status, row.amount_due, row.balance) == ("open", debit, debit)
    assert row.reference.startswith("RF") and row.due_date.isoformat() == "2027-04-16"
    assert row.scan_line.split(" ")[1] == f"{debit:012d}"


def test_bill_numbers_are_gapless_under_concurrent_runs(engine: Engine) -> None:
    seed_world(engine, meters_per_gateway=3, topup=0)
    periods = [Period(2027, m) for m in range(1, 13)]

    def one(period: Period) -> RunResult:
        return bill(engine, period, now=late)

    late = datetime(2028, 1, 2, tzinfo=UTC)
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(one, periods * 2))
    assert sum(r.created for r in results) == len(periods)
    with read_tx(engine) as conn:
        numbers = sorted(conn.execute(select(bills.c.number)).scalars())
    # a period run after a later one skips the customers billed for the later one: how many
    # bills there are depends on the order the runs took; their numbers never have a gap
    assert len(numbers) >= 3
    assert numbers == [f"SMSA-2028-{n:06d}" for n in range(1, len(numbers) + 1)]
    assert sum(len(r.bills) for r in results if r.created) == len(numbers)


def test_the_scheduler_job_bills_the_month_just_ended(db_url: str, engine: Engine) -> None:
    world = seed_world(engine, meters_per_gateway=1, topup=0)
    ((meter, customer),) = world.customers.items()
    debit = post_usage(engine, (meter, customer), 1, datetime(2027, 1, 20, tzinfo=UTC), 2000)
    first = billing_job(db_url, now="2027-02-01T00:30:00+00:00")
    assert first.created and str(first.period) == "2027-01"
    assert not billing_job(db_url, now="2027-02-01T01:30:00+00:00").created
    row, _ = bill_of(engine, first, customer)
    assert row.charges == debit
