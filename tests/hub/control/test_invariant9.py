"""Invariant 9 as ``check_invariants`` reports it, on SQLite and PostgreSQL: only consumption
(and corrections) may pass a floor; protected customers are never left cut off automatically."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from hub import ledger
from hub.control.engine import CreditControl
from hub.db import run_tx
from hub.errors import BelowFloorError
from hub.events import record_event
from tests.hub.control.scene import Clock, make_scene


def test_usage_past_the_floor_is_debt_other_debits_are_not(engine: Engine) -> None:
    s = make_scene(engine, CreditControl(engine, clock=Clock()), balance=100)
    s.use(400)  # consumption is never refused: -300, below the floor 0
    assert s.invariants() == {}
    one = [(s.customer, -1), ("provider:gen", 1)]
    with pytest.raises(BelowFloorError):  # a checked debit is refused ...
        run_tx(engine, lambda x: ledger.post_entry(x, "transfer", one, "USD"))
    # ... and one forced past the floor is named by the check
    five = [(s.customer, -5), ("provider:gen", 5)]
    run_tx(engine, lambda x: ledger.post_entry(x, "adjustment", five, "USD", enforce_floor=False))
    bad = s.invariants()
    assert set(bad) == {"floors"}
    assert bad["floors"]["sample"] == [{"id": s.customer, "balance": -305, "floor": 0}]


def test_protected_customer_left_cut_off_automatically_is_named(engine: Engine) -> None:
    s = make_scene(engine, CreditControl(engine, clock=Clock()), balance=0, protected=True)
    s.use(100)
    assert "operator_alert" in s.kinds() and s.invariants() == {}

    def agent_event(kind: str, **data: object) -> None:
        run_tx(engine, lambda x: record_event(x, kind, meter_id=s.meter, data=dict(data)) and None)

    agent_event("disconnect", cause="credit")  # an agent ignoring the protected flag
    assert set(s.invariants()) == {"protected_supply"}
    agent_event("reconnect", cause="command")
    assert s.invariants() == {}
    s.control.operator(s.meter, "disconnect", "unsafe installation")  # an operator may
    assert s.invariants() == {}


def test_a_debit_is_checked_against_the_floor_in_force_when_posted(engine: Engine) -> None:
    """Emergency credit lowers the floor, a transfer uses it, the floor goes back to zero: the
    transfer stays within the floor of its time, and a forced debit past it is still named."""
    s = make_scene(engine, CreditControl(engine, clock=Clock()), balance=100)
    run_tx(engine, lambda x: ledger.set_floor(x, s.customer, -500))
    out = [(s.customer, -400), ("provider:gen", 400)]
    run_tx(engine, lambda x: ledger.post_entry(x, "transfer", out, "USD"))  # -300 >= -500
    run_tx(engine, lambda x: ledger.set_floor(x, s.customer, 0))  # repaid later
    assert s.invariants() == {}
    forced = [(s.customer, -250), ("provider:gen", 250)]
    run_tx(engine, lambda x: ledger.post_entry(x, "adjustment", forced, "USD", enforce_floor=False))
    assert s.invariants()["floors"]["sample"] == [{"id": s.customer, "balance": -550, "floor": 0}]
