"""The invariant check passes on a sound ledger and names each kind of corruption (on SQLite
and PostgreSQL: ``engine`` runs each test on both)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from hub import ledger
from hub.db import read_tx, run_tx, write_tx
from hub.ledger import UsagePosting
from tests.hub.world import World, failed, fund, make_world


def _sound(engine: Engine) -> World:
    w = make_world(engine)
    fund(engine, w, 1000)
    c, p = w.customers[0], w.providers[0]
    run_tx(engine, lambda s: ledger.post_usage_batch(s, [
        UsagePosting(w.meters[0], 1, 100, 150, [(c, -30), (p, 30)], "USD"),
        UsagePosting(w.meters[0], 2, 150, 170, [(c, -12), (p, 12)], "USD"),
    ]))  # fmt: skip
    return w


def test_sound_ledger_passes(engine: Engine) -> None:
    _sound(engine)
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
    assert report["ok"], failed(report)
    energy = report["checks"]["energy"]["detail"]
    assert (energy["posted_wh"], energy["meters"], energy["resets"]) == (70, 1, 0)
    register = report["checks"]["energy_follows_register"]["detail"]
    assert {k: register[k] for k in ("meters", "segments", "posted_wh", "unposted_wh",
                                     "register_wh", "violations")} == {
        "meters": 1, "segments": 1, "posted_wh": 70, "unposted_wh": 0, "register_wh": 70,
        "violations": 0}  # fmt: skip


def _tamper_balance(conn: Connection, w: World) -> None:
    conn.execute(text("UPDATE accounts SET balance = balance + 1 WHERE id = :a"),
                 {"a": w.customers[0]})  # fmt: skip


def _unbalanced_line(conn: Connection, w: World) -> None:
    entry = conn.execute(text("SELECT MIN(id) FROM journal_entries")).scalar_one()
    conn.execute(text("INSERT INTO journal_lines (entry_id, account_id, amount) "
                      "VALUES (:e, :a, 5)"), {"e": entry, "a": w.providers[1]})  # fmt: skip
    conn.execute(text("UPDATE accounts SET balance = balance + 5 WHERE id = :a"),
                 {"a": w.providers[1]})  # fmt: skip


def _skipped_energy(conn: Connection, w: World) -> None:
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 3, 180, 200, [], "USD")])


def _resent_span(conn: Connection, w: World) -> None:
    """The attack of issue 14: seq 1's span again under a new seq (the register "went back")."""
    c, p = w.customers[0], w.providers[0]
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 3, 100, 150, [(c, -30), (p, 30)],
                                                "USD")])  # fmt: skip


def _overlapping_span(conn: Connection, w: World) -> None:
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 3, 160, 180, [], "USD")])


def _late_overlap(conn: Connection, w: World) -> None:
    """A late record filling a seq hole but not the register's: seq 4 posted, then seq 3."""
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 4, 180, 190, [], "USD")])
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 3, 150, 185, [], "USD")])


def _segment_back(conn: Connection, w: World) -> None:
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 3, 0, 10, [], "USD", segment=1)])
    ledger.post_usage_batch(conn, [UsagePosting(w.meters[0], 5, 170, 180, [], "USD")])


def _below_floor(conn: Connection, w: World) -> None:
    ledger.post_entry(conn, "adjustment", [(w.customers[1], -1001), (w.providers[0], 1001)],
                      "USD", enforce_floor=False)  # fmt: skip


def _negative_share(conn: Connection, w: World) -> None:
    c, p, q = w.customers[0], w.providers[0], w.providers[1]
    ledger.post_usage_batch(
        conn, [UsagePosting(w.meters[0], 3, 170, 180, [(c, -5), (p, 10), (q, -5)], "USD")]
    )


@pytest.mark.parametrize(
    ("corrupt", "broken"),
    [
        (_tamper_balance, {"cached_balances"}),
        (_unbalanced_line, {"entries_balance", "currency_totals"}),
        (_skipped_energy, {"energy", "energy_follows_register"}),
        (_resent_span, {"energy_follows_register"}),
        (_overlapping_span, {"energy_follows_register"}),
        (_late_overlap, {"energy_follows_register"}),
        (_segment_back, {"energy_follows_register"}),
        (_below_floor, {"floors"}),
        (_negative_share, {"usage_shares"}),
    ],
)
def test_corruption_is_named(
    engine: Engine, corrupt: Callable[[Connection, World], None], broken: set[str]
) -> None:
    w = _sound(engine)
    with write_tx(engine) as conn:
        corrupt(conn, w)
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
    assert not report["ok"]
    assert set(failed(report)) == broken
    for name in broken:
        assert report["checks"][name]["detail"]["sample"]


def test_register_reset_is_not_a_violation(engine: Engine) -> None:
    """A register that went back starts a new segment (as ingest posts an accepted reset):
    each segment is checked on its own, and records missing from one (a seq gap) are counted,
    not a violation."""
    w = _sound(engine)
    run_tx(engine, lambda s: ledger.post_usage_batch(s, [
        UsagePosting(w.meters[0], 3, 0, 10, [], "USD", segment=1),  # register went back to 0
        UsagePosting(w.meters[0], 4, 10, 25, [], "USD", segment=1),
        UsagePosting(w.meters[0], 7, 40, 45, [], "USD", segment=1),  # seqs 5, 6 not (yet) in
    ]))  # fmt: skip
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
    assert report["ok"], failed(report)
    assert report["checks"]["energy"]["detail"]["resets"] == 1
    register = report["checks"]["energy_follows_register"]["detail"]
    assert (register["segments"], register["posted_wh"], register["unposted_wh"],
            register["register_wh"]) == (2, 70 + 30, 15, 70 + 45)  # fmt: skip


def test_overlap_is_reported_with_its_segment_and_seq(engine: Engine) -> None:
    """What /ledger/check shows for the attack of issue 14: the segment's posted energy
    against its register span, and the first record that broke it."""
    w = _sound(engine)
    with write_tx(engine) as conn:
        _resent_span(conn, w)
    with read_tx(engine) as conn:
        check = ledger.check_invariants(conn)["checks"]["energy_follows_register"]
    assert not check["ok"]
    assert check["detail"]["sample"] == [{
        "meter_id": w.meters[0], "segment": 0, "first_seq": 1, "last_seq": 3,
        "posted_wh": 120, "unposted_wh": 0, "register_wh": 70, "bad_seq": 3}]  # fmt: skip
