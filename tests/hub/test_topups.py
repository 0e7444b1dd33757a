"""Top-ups: money in once per idempotency key; a replay answers the same and moves nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from hub import ledger
from hub.db import read_tx, run_tx, write_tx
from hub.errors import IdempotencyConflictError, InvalidInputError, UnknownAccountError
from tests.hub.world import make_world, snapshot


def test_topup_then_replay(engine: Engine) -> None:
    w = make_world(engine)
    c = w.customers[0]
    first = run_tx(engine, lambda s: ledger.post_topup(s, c, 1250, idempotency_key="a",
                                                       reference="r1"))  # fmt: skip
    assert (first.amount, first.balance, first.currency, first.created) == (1250, 1250, "USD", True)
    second = run_tx(engine, lambda s: ledger.post_topup(s, c, 300, idempotency_key="b"))
    assert second.balance == 1550
    before = snapshot(engine)
    again = run_tx(engine, lambda s: ledger.post_topup(s, c, 1250, idempotency_key="a",
                                                       reference="r1"))  # fmt: skip
    assert again.created is False
    assert (again.entry_id, again.balance) == (first.entry_id, 1250)  # the same answer
    assert snapshot(engine) == before
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, ledger.clearing_account_id("USD")).balance <= -1550
        assert ledger.check_invariants(conn)["ok"]


def test_same_key_other_body_conflicts(engine: Engine) -> None:
    w = make_world(engine)
    c = w.customers[0]
    run_tx(engine, lambda s: ledger.post_topup(s, c, 100, idempotency_key="k", reference="x"))
    before = snapshot(engine)
    for amount, ref in ((101, "x"), (100, "y")):
        with pytest.raises(IdempotencyConflictError), write_tx(engine) as conn:
            ledger.post_topup(conn, c, amount, idempotency_key="k", reference=ref)
    assert snapshot(engine) == before


def test_keys_are_scoped_to_the_account(engine: Engine) -> None:
    w = make_world(engine)
    a = run_tx(engine, lambda s: ledger.post_topup(s, w.customers[0], 5, idempotency_key="k"))
    b = run_tx(engine, lambda s: ledger.post_topup(s, w.customers[1], 5, idempotency_key="k"))
    assert a.entry_id != b.entry_id and a.created and b.created


def test_a_provider_transaction_is_one_per_provider_whatever_the_account(engine: Engine) -> None:
    w = make_world(engine)
    c1, c2 = w.customers[0], w.customers[1]
    txn = ledger.ProviderTxn("mpesa", "TX1")
    # An API key that spells the provider's transaction does not reach it.
    for key in ("pay:mpesa:TX1", "payment:mpesa:TX1", ledger.payment_key(txn)):
        assert run_tx(engine, lambda s, k=key: ledger.post_topup(s, c1, 5, idempotency_key=k))
    paid = run_tx(engine, lambda s: ledger.post_topup(s, c1, 700, payment=txn))
    assert paid.created
    before = snapshot(engine)
    again = run_tx(engine, lambda s: ledger.post_topup(s, c1, 700, payment=txn))
    assert (again.created, again.entry_id, again.balance) == (False, paid.entry_id, paid.balance)
    for account, amount in ((c2, 700), (c1, 701)):
        with pytest.raises(IdempotencyConflictError), write_tx(engine) as conn:
            ledger.post_topup(conn, account, amount, payment=txn)
    assert snapshot(engine) == before
    # Another provider's transaction of the same id is another payment.
    bank = ledger.ProviderTxn("bank", "TX1")
    other = run_tx(engine, lambda s: ledger.post_topup(s, c2, 700, payment=bank))
    assert other.created
    with read_tx(engine) as conn:
        assert ledger.check_invariants(conn)["ok"]


@pytest.mark.parametrize(
    ("amount", "key", "error"),
    [(0, "k", InvalidInputError), (-5, "k", InvalidInputError), (5, "", InvalidInputError),
     (5, "x" * 101, InvalidInputError), (2.5, "k", InvalidInputError)],
)  # fmt: skip
def test_bad_topups_are_refused(engine: Engine, amount: int, key: str, error: type) -> None:
    w = make_world(engine)
    before = snapshot(engine)
    with pytest.raises(error), write_tx(engine) as conn:
        ledger.post_topup(conn, w.customers[0], amount, idempotency_key=key)
    assert snapshot(engine) == before


def test_unknown_account(engine: Engine) -> None:
    with pytest.raises(UnknownAccountError), write_tx(engine) as conn:
        ledger.post_topup(conn, "nobody", 5, idempotency_key="k")
