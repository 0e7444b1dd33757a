"""Reversals, account pages, provider statements and balances."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy import Engine

from hub import ledger
from hub.db import read_tx, run_tx, write_tx
from hub.errors import AlreadyReversedError, NotFoundError, UnknownAccountError
from hub.ledger import UsagePosting
from tests.hub.world import failed, fund, make_world, snapshot

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_reversal_negates_once(engine: Engine) -> None:
    w = make_world(engine)
    fund(engine, w, 100)
    c, p = w.customers[0], w.providers[0]
    entry = run_tx(engine, lambda s: ledger.post_entry(s, "adjustment", [(c, -40), (p, 40)], "USD"))
    rev = run_tx(engine, lambda s: ledger.post_reversal(s, entry, memo="wrong meter"))
    with read_tx(engine) as conn:
        assert ledger.get_account(conn, c).balance == 100
        assert ledger.get_account(conn, p).balance == 0
        top = ledger.account_lines(conn, c, limit=1).items[0]
        assert (top.entry_id, top.kind, top.amount, top.memo) == (
            rev,
            "reversal",
            40,
            "wrong meter",
        )
        report = ledger.check_invariants(conn)
    assert report["ok"], failed(report)
    before = snapshot(engine)
    with pytest.raises(AlreadyReversedError), write_tx(engine) as conn:
        ledger.post_reversal(conn, entry)
    with pytest.raises(NotFoundError), write_tx(engine) as conn:
        ledger.post_reversal(conn, 10**9)
    assert snapshot(engine) == before


def test_account_lines_newest_first_in_pages(engine: Engine) -> None:
    w = make_world(engine)
    c = w.customers[0]
    for i in range(1, 8):
        run_tx(engine, partial(ledger.post_topup, account_id=c, amount=i, idempotency_key=f"k{i}"))
    seen: list[int] = []
    before = None
    with read_tx(engine) as conn:
        while True:
            page = ledger.account_lines(conn, c, limit=3, before=before)
            seen += [x.amount for x in page.items]
            if page.next_before is None:
                break
            before = page.next_before
        with pytest.raises(UnknownAccountError):
            ledger.account_lines(conn, "nobody")
    assert seen == [7, 6, 5, 4, 3, 2, 1]


def test_provider_statement_and_balances(engine: Engine) -> None:
    w = make_world(engine, n_providers=2)
    fund(engine, w, 1000)
    c, (p, q) = w.customers[0], w.providers
    records = [
        UsagePosting(w.meters[0], i, i * 10, i * 10 + 10, [(c, -15), (p, 10), (q, 5)], "USD",
                     interval_end=T0 + timedelta(days=i))
        for i in range(1, 6)
    ]  # fmt: skip
    run_tx(engine, lambda s: ledger.post_usage_batch(s, records))
    first = run_tx(engine, lambda s: ledger.post_usage_batch(s, records)).duplicates
    assert len(first) == 5
    provider_id = p.split(":", 1)[1]
    with read_tx(engine) as conn:
        st = ledger.provider_statement(conn, provider_id, T0 + timedelta(days=2),
                                       T0 + timedelta(days=4))  # fmt: skip
        assert (st.opening, st.closing, st.totals) == (10, 30, {"usage": 20})
        assert [x.seq for x in st.lines] == [2, 3]
        assert st.lines[0].effective_at == T0 + timedelta(days=2)
        balances = {b.account_id: b.balance for b in ledger.provider_balances(conn)}
        assert balances[p] == 50 and balances[q] == 25
        with pytest.raises(NotFoundError):
            ledger.provider_statement(conn, "nobody", T0, T0)
