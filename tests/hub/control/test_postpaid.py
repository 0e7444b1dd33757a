"""A postpaid customer (contract section 6) consumes against a receivable: credit control never
cuts it off for credit, and the agent is told it may run the balance down without limit."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import update

from hub.billing.bill import POSTPAID
from hub.control.credit_state import credit_rules
from hub.db import run_tx
from hub.ledger.sql import customers
from protocol.messages import MAX_MONEY
from tests.hub.control.scene import Clock, Scene

SceneOf = Callable[..., Scene]


def test_postpaid_is_never_cut_off_for_credit(scene_of: SceneOf, clock: Clock) -> None:
    s = scene_of(balance=100, rules={"grace_s": 0})
    flags = {"credit_rules": {"grace_s": 0}, "billing": POSTPAID}
    run_tx(s.engine, lambda session: session.execute(
        update(customers).where(customers.c.id == s.customer).values(flags=flags)))  # fmt: skip
    s.use(5000)  # far below zero
    clock.advance(seconds=3600)
    s.control.tick()
    s.use(10)
    assert s.balance() == 100 - 5010
    assert "disconnect" not in s.kinds()
    assert credit_rules(flags, False).alternate_available == MAX_MONEY
    assert credit_rules({"billing": "prepaid"}, False).alternate_available == 0
