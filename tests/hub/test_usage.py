"""Usage batches: one transaction, (meter, seq) posted at most once, bad records reported."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import Engine, select
from sqlmodel import Session

from hub import ledger
from hub.db import read_tx, run_tx
from hub.ledger import UsagePosting
from hub.ledger.posting import apply_deltas
from hub.ledger.sql import entries, meters
from tests.hub.world import World, failed, fund, make_world, snapshot

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def usage(w: World, meter: int, seq: int, span: tuple[int, int], cost: int) -> UsagePosting:
    """Customer ``meter`` pays ``cost``, split over the providers (remainder to the first)."""
    n = len(w.providers)
    shares = [cost // n] * n
    shares[0] += cost - sum(shares)
    lines = [(w.customers[meter], -cost)] + [
        (p, s) for p, s in zip(w.providers, shares, strict=True) if s
    ]
    return UsagePosting(w.meters[meter], seq, *span, lines if cost else [], "USD",
                        carry=f"carry-{seq}", metadata={"agent_shares": [cost], "tariff": "t1/3"},
                        interval_end=T0 + timedelta(minutes=seq))  # fmt: skip


def test_deferred_credits_are_left_to_the_caller(engine: Engine) -> None:
    """``defer_credits``: the providers' increases come back to be applied last, in the same
    transaction; once applied the ledger is what an immediate posting gives."""
    w = make_world(engine)
    fund(engine, w, 10_000)
    batch = [usage(w, 0, s, (100 * s, 100 * s + 100), 37) for s in range(1, 21)]

    def post(session: Session) -> dict[str, int]:
        result = ledger.post_usage_batch(session, batch, defer_credits=True)
        assert set(result.accounts) == {w.customers[0]}  # the debit is applied at once
        assert sum(result.deferred.values()) == 37 * 20
        apply_deltas(session.connection(), result.deferred)
        return result.deferred

    deferred = run_tx(engine, post)
    assert set(deferred) <= set(w.providers)
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
    assert report["ok"], report


def test_batch_posts_and_replay_posts_nothing(engine: Engine) -> None:
    w = make_world(engine)
    fund(engine, w, 10_000)
    batch = [usage(w, 0, s, (100 * s, 100 * s + 100), 37) for s in range(1, 51)]
    batch += [usage(w, 1, s, (10 * s, 10 * s + 10), 0) for s in range(1, 11)]  # cost 0: kept
    result = run_tx(engine, lambda s: ledger.post_usage_batch(s, batch))
    assert len(result.posted) == 60 and not result.duplicates and not result.rejected
    assert result.accounts[w.customers[0]].balance == 10_000 - 37 * 50
    assert sum(result.accounts[p].balance for p in w.providers) == 37 * 50
    before = snapshot(engine)
    again = run_tx(engine, lambda s: ledger.post_usage_batch(s, list(reversed(batch))))
    assert not again.posted and len(again.duplicates) == 60
    assert snapshot(engine) == before
    with read_tx(engine) as conn:
        row = conn.execute(select(meters).where(meters.c.id == w.meters[0])).one()
        assert (row.last_seq, row.import_wh) == (50, 5100)
        assert ledger.get_carry(conn, w.meters[0]) == "carry-50"
        report = ledger.check_invariants(conn)
        entry = conn.execute(select(entries).where(entries.c.id == result.posted[-1][2])).one()
    assert (entry.metadata, entry.effective_at) == (
        {"agent_shares": [0], "tariff": "t1/3"},
        T0 + timedelta(minutes=10),
    )
    assert report["ok"], failed(report)
    assert report["checks"]["energy"]["detail"]["posted_wh"] >= 5000 + 100


def test_duplicates_inside_a_batch_and_out_of_order(engine: Engine) -> None:
    w = make_world(engine)
    fund(engine, w, 100)
    a = [usage(w, 0, s, (s * 10, s * 10 + 10), 5) for s in (3, 1, 3, 2, 1)]
    result = run_tx(engine, lambda s: ledger.post_usage_batch(s, a))
    assert sorted(seq for _, seq, _ in result.posted) == [1, 2, 3]
    assert sorted(seq for _, seq in result.duplicates) == [1, 3]
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, w.customers[0]).balance == 85
        assert ledger.check_invariants(conn)["ok"]


def test_bad_records_are_rejected_with_a_reason_and_the_rest_posted(engine: Engine) -> None:
    w = make_world(engine)
    fund(engine, w, 100)
    good = usage(w, 0, 1, (0, 10), 5)
    unbalanced = UsagePosting(
        w.meters[0], 2, 10, 20, [(w.customers[0], -5), (w.providers[0], 4)], "USD"
    )
    backwards = usage(w, 0, 3, (20, 10), 5)
    unknown_meter = UsagePosting("ghost", 1, 0, 1, [], "USD")
    unknown_account = UsagePosting(
        w.meters[0], 4, 20, 30, [("nobody", -1), (w.providers[0], 1)], "USD"
    )
    wrong_currency = UsagePosting(w.meters[0], 5, 30, 40, [], "EUR")
    wrong_currency2 = UsagePosting(
        w.meters[0], 6, 30, 40, [(w.customers[0], -1), (w.providers[0], 1)], "EUR"
    )
    batch = [good, unbalanced, backwards, unknown_meter, unknown_account, wrong_currency2]
    result = run_tx(engine, lambda s: ledger.post_usage_batch(s, batch))
    assert [(m, s) for m, s, _ in result.posted] == [(w.meters[0], 1)]
    reasons = {p.seq if p.meter_id != "ghost" else -1: r for p, r in result.rejected}
    assert "sum to 1" in reasons[2] or "sum to -1" in reasons[2]
    assert "backwards" in reasons[3]
    assert "unknown meter" in reasons[-1]
    assert "unknown account" in reasons[4]
    assert "EUR" in reasons[6]
    assert wrong_currency.lines == []
    with read_tx(engine) as conn:
        assert ledger.check_invariants(conn)["ok"]


def test_rate_of_batched_posting(engine: Engine) -> None:
    """Smoke-measures records/s (printed with -s); asserts only a generous lower bound."""
    w = make_world(engine, n_providers=4)
    batches = [[usage(w, 0, b * 1000 + i, (0, 0), 17) for i in range(1000)] for b in range(3)]
    t0 = time.perf_counter()
    for batch in batches:
        run_tx(engine, partial(ledger.post_usage_batch, postings=batch))
    rate = 3000 / (time.perf_counter() - t0)
    print(f"\n{engine.dialect.name}: {rate:,.0f} usage records/s (6 rows each)")
    assert rate > 500
