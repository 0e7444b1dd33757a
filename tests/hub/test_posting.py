"""Single postings: balanced entries move money; anything else is refused and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from hub import ledger
from hub.db import make_engine, read_tx, run_tx, write_tx
from hub.errors import (
    BelowFloorError,
    CurrencyMismatchError,
    EmptyEntryError,
    InvalidInputError,
    LedgerError,
    UnbalancedEntryError,
    UnknownAccountError,
    ZeroLineError,
)
from hub.models import AccountKind, EntryKind
from tests.hub.conftest import SHARED_DB, PgServer
from tests.hub.races import race
from tests.hub.world import make_world, snapshot

DB_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def test_balanced_entry_moves_money(engine: Engine) -> None:
    w = make_world(engine)
    c, p = w.customers[0], w.providers[0]
    with write_tx(engine) as conn:
        entry = ledger.post_entry(conn, EntryKind.ADJUSTMENT, [(p, -500), (c, 500)], "USD",
                                  enforce_floor=False, memo="opening credit")  # fmt: skip
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, c).balance == 500
        assert ledger.get_account(conn, p).balance == -500
        page = ledger.account_lines(conn, c)
        assert [(x.entry_id, x.amount, x.kind, x.memo) for x in page.items] == [
            (entry, 500, "adjustment", "opening credit")
        ]
        assert ledger.check_invariants(conn)["ok"]


@pytest.mark.parametrize(
    ("make_lines", "error"),
    [
        (lambda c, p: [], EmptyEntryError),
        (lambda c, p: [(c, 5)], EmptyEntryError),
        (lambda c, p: [(c, 5), (p, -4)], UnbalancedEntryError),
        (lambda c, p: [(c, 0), (p, 0)], ZeroLineError),
        (lambda c, p: [(c, 1.5), (p, -1.5)], InvalidInputError),
        (lambda c, p: [(c, True), (p, -1)], InvalidInputError),
        (lambda c, p: [(c, 5), ("nobody", -5)], UnknownAccountError),
    ],
)
def test_bad_entries_are_refused(
    engine: Engine, make_lines: Callable[[str, str], list[tuple[str, Any]]], error: type[Exception]
) -> None:
    w = make_world(engine)
    before = snapshot(engine)
    with pytest.raises(error), write_tx(engine) as conn:
        ledger.post_entry(conn, "adjustment", make_lines(w.customers[0], w.providers[0]), "USD",
                          enforce_floor=False)  # fmt: skip
    assert snapshot(engine) == before


def test_currency_mismatch_is_refused(engine: Engine) -> None:
    w = make_world(engine)
    with write_tx(engine) as conn:
        ledger.open_account(conn, f"eur-{w.tag}", name="Euro", kind=AccountKind.SPONSOR,
                            currency="EUR", floor=None)  # fmt: skip
    before = snapshot(engine)
    with pytest.raises(CurrencyMismatchError), write_tx(engine) as conn:
        ledger.post_entry(conn, "transfer", [(f"eur-{w.tag}", -5), (w.customers[0], 5)], "USD")
    assert snapshot(engine) == before


def test_floor_is_honoured_unless_waived(engine: Engine) -> None:
    w = make_world(engine)
    c, p = w.customers[0], w.providers[0]
    with pytest.raises(BelowFloorError) as caught, write_tx(engine) as conn:
        ledger.post_entry(conn, "usage", [(c, -1), (p, 1)], "USD", meter_id=w.meters[0], seq=1)
    assert (caught.value.account_id, caught.value.balance, caught.value.floor) == (c, 0, 0)
    with write_tx(engine) as conn:
        ledger.set_floor(conn, c, -300)  # emergency credit
        ledger.post_entry(conn, "adjustment", [(c, -300), (p, 300)], "USD")
        with pytest.raises(BelowFloorError):
            ledger.post_entry(conn, "adjustment", [(c, -1), (p, 1)], "USD")
    with write_tx(engine) as conn:
        ledger.post_entry(conn, "adjustment", [(c, -1), (p, 1)], "USD", enforce_floor=False)
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
    assert not report["ok"]
    assert [k for k, v in report["checks"].items() if not v["ok"]] == ["floors"]
    assert report["checks"]["floors"]["detail"]["sample"] == [
        {"id": c, "balance": -301, "floor": -300}
    ]


def test_idempotency_key_posts_once(engine: Engine) -> None:
    w = make_world(engine)
    lines = [(w.providers[0], -7), (w.customers[0], 7)]
    ids = [
        run_tx(engine, lambda s: ledger.post_entry(s, "adjustment", lines, "USD",
                                                   idempotency_key="k1", enforce_floor=False))
        for _ in range(3)
    ]  # fmt: skip
    assert len(set(ids)) == 1
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, w.customers[0]).balance == 7


@pytest.mark.postgres
def test_a_key_an_open_posting_holds_is_waited_for_and_posted_once(pg_server: PgServer) -> None:
    """Two postings with one key on different accounts, so that no account lock orders them:
    the second finds no entry by the key, waits on the key's unique index (PostgreSQL: a
    partial index, migration 0940, which ``ON CONFLICT`` names) until the first commits, then
    posts nothing and returns the first's entry."""
    pg_server.wipe(SHARED_DB)
    engine = make_engine(pg_server.url(SHARED_DB))
    try:
        w = make_world(engine, n_providers=2, n_customers=2)

        def post(db: Any, lines: list[tuple[str, int]]) -> int:
            return ledger.post_entry(db, "adjustment", lines, "USD", idempotency_key="k",
                                     enforce_floor=False)  # fmt: skip

        first, second = race(
            engine,
            lambda held: post(held, [(w.providers[0], -7), (w.customers[0], 7)]),
            lambda: run_tx(engine, lambda s: post(s, [(w.providers[1], -7), (w.customers[1], 7)])),
        )
        assert second == first
        with read_tx(engine) as conn:
            assert ledger.get_account(conn, w.customers[0]).balance == 7
            assert ledger.get_account(conn, w.customers[1]).balance == 0
            assert ledger.check_invariants(conn)["ok"]
    finally:
        engine.dispose()


@DB_SETTINGS
@given(
    amounts=st.lists(st.integers(-(10**12), 10**12).filter(bool), min_size=2, max_size=6),
    skew=st.integers(-1000, 1000).filter(bool),
)
def test_unbalanced_entry_changes_nothing(engine: Engine, amounts: list[int], skew: int) -> None:
    w = make_world(engine, n_providers=3, n_customers=3)
    accounts = w.providers + w.customers
    balanced = [*amounts, -sum(amounts)] if sum(amounts) else amounts
    lines = [(accounts[i % len(accounts)], a) for i, a in enumerate(balanced) if a]
    lines.append((accounts[0], skew))  # now off by ``skew``
    before = snapshot(engine)
    with pytest.raises(LedgerError), write_tx(engine) as conn:
        ledger.post_entry(conn, "adjustment", lines, "USD", enforce_floor=False)
    assert snapshot(engine) == before
