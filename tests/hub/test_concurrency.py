"""Several threads posting at once lose no update: SQLite serialises writers with
BEGIN IMMEDIATE, PostgreSQL with row locks (and ``run_tx`` retries a deadlock victim)."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy import Engine, select
from sqlmodel import Session

from hub import ledger
from hub.db import read_tx, run_tx
from hub.ledger import UsagePosting
from hub.ledger.sql import accounts
from tests.hub.world import World, failed, make_world

THREADS = 4
ROUNDS = 25


def worker(engine: Engine, w: World, n: int) -> dict[str, int]:
    """Random transfers, top-ups and usage; returns the net change per account it caused."""
    rng = random.Random(n)
    parties = w.customers + w.providers
    net: dict[str, int] = {}

    def transfer(s: Session, a: str, b: str, x: int) -> None:
        ledger.post_entry(s, "transfer", [(a, -x), (b, x)], "USD", enforce_floor=False)

    for i in range(ROUNDS):
        a, b = rng.sample(parties, 2)
        x = rng.randint(1, 1000)
        run_tx(engine, partial(transfer, a=a, b=b, x=x))
        net[a], net[b] = net.get(a, 0) - x, net.get(b, 0) + x
        c = rng.choice(w.customers)
        res = run_tx(engine, partial(ledger.post_topup, account_id=c, amount=x,
                                     idempotency_key=f"w{n}-{i}"))  # fmt: skip
        assert res.created
        net[c] = net.get(c, 0) + x
    return net


def test_no_lost_updates(engine: Engine) -> None:
    w = make_world(engine, n_providers=3, n_customers=3)
    for c in w.customers:
        run_tx(engine, partial(ledger.set_floor, account_id=c, floor=None))
    with read_tx(engine) as conn:
        start = {r.id: r.balance for r in conn.execute(select(accounts.c.id, accounts.c.balance))}
    with ThreadPoolExecutor(THREADS) as pool:
        nets = list(pool.map(partial(worker, engine, w), range(THREADS)))
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
        for account in w.customers + w.providers:
            expected = start[account] + sum(n.get(account, 0) for n in nets)
            assert ledger.get_account(conn, account).balance == expected
    assert report["ok"], failed(report)


def test_same_batch_from_many_threads_posts_once(engine: Engine) -> None:
    w = make_world(engine)
    c, p = w.customers[0], w.providers[0]
    batch = [UsagePosting(w.meters[0], s, s * 10, s * 10 + 10, [(c, -3), (p, 3)], "USD")
             for s in range(1, 41)]  # fmt: skip

    def post_shuffled(n: int) -> int:
        mine = batch[:]
        random.Random(n).shuffle(mine)
        return len(run_tx(engine, partial(ledger.post_usage_batch, postings=mine)).posted)

    with ThreadPoolExecutor(THREADS) as pool:
        posted = list(pool.map(post_shuffled, range(THREADS * 2)))
    assert sum(posted) == 40
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, c).balance == -120
        report = ledger.check_invariants(conn)
    assert set(failed(report)) <= {"floors"}  # the customer owes; nothing else may break


def test_same_topup_key_from_many_threads_moves_money_once(engine: Engine) -> None:
    w = make_world(engine)
    c = w.customers[0]

    def topup(_: int) -> tuple[int, int, bool]:
        res = run_tx(engine, partial(ledger.post_topup, account_id=c, amount=500,
                                     idempotency_key="same", reference="r"))  # fmt: skip
        return res.entry_id, res.balance, res.created

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(topup, range(20)))
    assert len({(e, b) for e, b, _ in results}) == 1
    assert sum(created for _, _, created in results) == 1
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, c).balance == 500
