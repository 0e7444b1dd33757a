"""Offline top-up tokens and money (hub.tokens.store), as a property: whatever sequence of
vends, reports (repeated, out of order, after a cancellation) and cancellations, no money is
made or lost, each token leaves the clearing account at most once, the customer never gets a
token's money twice, and every ledger invariant holds."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hub.db import make_engine, migrate, write_tx
from hub.errors import BelowFloorError, ConflictError
from hub.ledger.invariants import check_invariants
from hub.ledger.sql import accounts
from hub.tokens.store import T_TOKENS, cancel, settle_reported, setup, vend
from tests.hub.seed import seed_world

FUND = 5_000
steps = st.lists(
    st.one_of(
        st.tuples(st.just("vend"), st.integers(1, 3_000)),
        st.tuples(st.just("report"), st.integers(0, 7)),
        st.tuples(st.just("cancel"), st.integers(0, 7)),
    ),
    max_size=14,
)


@settings(max_examples=25, deadline=None)
@given(steps)
def test_no_sequence_makes_loses_or_doubles_money(ops: list[tuple[str, int]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'hub.db'}"
        migrate(url)
        engine = make_engine(url)
        try:
            world = seed_world(engine, gateways=1, meters_per_gateway=1, topup=FUND)
            meter, customer = next(iter(world.customers.items()))
            vended: list[tuple[int, int]] = []  # (count, amount)
            for n, (op, arg) in enumerate(ops):
                with write_tx(engine) as conn:
                    if op == "vend":
                        try:
                            v = vend(conn, customer, meter, arg, f"k{n}")
                        except BelowFloorError:
                            continue
                        vended.append((v.count, v.amount))
                    elif vended and op == "report":
                        count, amount = vended[arg % len(vended)]
                        settle_reported(conn, meter, count, amount)
                    elif vended:
                        count = vended[arg % len(vended)][0]
                        by_count = select(T_TOKENS.c.id).where(T_TOKENS.c["count"] == count)
                        with contextlib.suppress(ConflictError):  # settled: not cancellable
                            cancel(conn, conn.execute(by_count).scalar_one())
            with engine.connect() as conn:
                balances = dict(conn.execute(select(accounts.c.id, accounts.c.balance)).all())
                rows = conn.execute(select(T_TOKENS.c.status, T_TOKENS.c.amount)).all()
                report = check_invariants(conn)
                tokens = setup(conn, meter, world.gateways["gw-0"])
            waiting = sum(int(a) for s, a in rows if s == "vended")
            assert sum(balances.values()) == 0
            assert balances.get("tokens:USD", 0) == waiting
            assert balances[customer] == FUND - waiting  # settled or refunded: back once
            assert report["ok"], report
            if tokens is not None:
                assert not set(tokens.settled) & set(tokens.cancelled)
        finally:
            engine.dispose()
