"""Daily standing charges: posted once per meter and day, exact over time, balanced."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from math import floor

from sqlalchemy import Engine, update

from hub.db import read_tx, write_tx
from hub.ledger import check_invariants, get_account, provider_account_id
from hub.rating.standing import accrue_standing_charges, day_shares, standing_charges_job
from protocol.rating import standing_charges
from protocol.tariff import Tariff
from tests.hub.ingest.helpers import table
from tests.hub.seed import seed_world

TARIFF = {
    "id": "daily",
    "currency": "USD",
    "components": [
        {"provider": "grid", "per_kwh": "0.05", "per_day": "0.3333"},
        {"provider": "retail", "per_day": "0.125"},
        {"provider": "tax", "tax_rate": "0.16"},
    ],
}


def test_day_shares_never_drift() -> None:
    tariff = Tariff.model_validate(TARIFF)
    daily = standing_charges(tariff, 1)
    first = date(2026, 1, 1)
    totals: dict[str, int] = {}
    for i in range(400):
        for p, v in day_shares(tariff, first + timedelta(days=i)).items():
            assert v >= 0
            totals[p] = totals.get(p, 0) + v
    for p, per_day in daily.items():
        assert abs(totals[p] - per_day * 400) < 1
    assert day_shares(tariff, first) == day_shares(tariff, first)


def test_accrued_once_per_meter_and_day(engine: Engine) -> None:
    world = seed_world(engine, gateways=1, meters_per_gateway=2, tariff=TARIFF)
    with write_tx(engine) as conn:  # installed before the days charged
        conn.execute(update(table("meters")).values(created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    meter = next(iter(world.meters))
    customer = world.customers[meter]
    day = date(2026, 3, 1)
    with read_tx(engine) as conn:
        before = get_account(conn, customer).balance
    assert accrue_standing_charges(engine, day) == 2
    assert accrue_standing_charges(engine, day) == 0, "the same day again posts nothing"
    assert accrue_standing_charges(engine, day + timedelta(days=1), [meter]) == 1
    url = engine.url.render_as_string(hide_password=False)
    assert standing_charges_job(url, "2026-03-02") == 1  # the other meter's second day
    with read_tx(engine) as conn:
        after = get_account(conn, customer).balance
        grid = get_account(conn, provider_account_id("grid")).balance
        report = check_invariants(conn)
    assert report["ok"], report
    daily = sum(standing_charges(world.tariff, 1).values(), Fraction(0))
    assert before - after in (floor(2 * daily), floor(2 * daily) + 1, floor(2 * daily) - 1)
    assert grid > 0


def test_no_standing_charge_before_the_meter_existed(engine: Engine) -> None:
    seed_world(engine, gateways=1, meters_per_gateway=1, tariff=TARIFF)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    assert accrue_standing_charges(engine, yesterday) == 0
    assert accrue_standing_charges(engine, date(2026, 3, 1)) == 0
