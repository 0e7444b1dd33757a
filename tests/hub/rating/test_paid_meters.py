"""The meters an account pays a share of (``hub.rating.payers.paid_meters``), on SQLite and
PostgreSQL: its own, the shared meters it contributes to, the meters whose split rule names it;
not a shared meter it uses without paying, nor one whose rule leaves it out."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session

from hub.db import read_tx, run_tx
from hub.models import Meter, MeterCustomer
from hub.rating.payers import paid_meters
from tests.hub.world import make_world


def test_an_account_pays_its_own_shared_and_split_meters(engine: Engine) -> None:
    w = make_world(engine, n_customers=3)
    a, b, c = w.customers
    gateway = f"gw-{w.tag}"

    def work(session: Session) -> None:
        session.add(Meter(id=f"shared-{w.tag}", gateway_id=gateway, customer_id=a))
        session.add(MeterCustomer(meter_id=f"shared-{w.tag}", customer_id=a, weight=2))
        session.add(MeterCustomer(meter_id=f"shared-{w.tag}", customer_id=b, weight=1))
        session.add(MeterCustomer(meter_id=f"shared-{w.tag}", customer_id=c, weight=1,
                                  contributes=False))  # fmt: skip
        session.add(Meter(id=f"split-{w.tag}", gateway_id=gateway, customer_id=a,
                          split_rule={"accounts": {a: 1, c: 3}}))  # fmt: skip
        session.add(Meter(id=f"zero-{w.tag}", gateway_id=gateway, customer_id=b,
                          split_rule={"accounts": {a: 1, b: 0}}))  # fmt: skip

    run_tx(engine, work)
    m0, m1, m2 = w.meters
    with read_tx(engine) as conn:
        assert paid_meters(conn, a) == sorted([m0, f"shared-{w.tag}", f"split-{w.tag}",
                                               f"zero-{w.tag}"])  # fmt: skip
        assert paid_meters(conn, b) == sorted([m1, f"shared-{w.tag}"])
        assert paid_meters(conn, c) == sorted([m2, f"split-{w.tag}"])
        assert paid_meters(conn, "nobody") == []
