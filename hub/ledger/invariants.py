"""Every ledger invariant of DESIGN.md that the database can show, checked now.

``check_invariants`` runs one aggregate query per invariant; call it inside a read transaction
(``hub.db.read_tx``) for one consistent view on SQLite. Each check reports ``ok`` and a
``detail`` with counts and at most ``SAMPLE`` offending rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from hub.ledger.sql import Executor, conn_of

SAMPLE = 10

# name -> (SQL listing violations, what the invariant says)
_VIOLATIONS: dict[str, tuple[str, str]] = {
    "entries_balance": (
        "SELECT entry_id, SUM(amount) AS total FROM journal_lines GROUP BY entry_id "
        "HAVING SUM(amount) <> 0",
        "every journal entry sums to zero",
    ),
    "line_currency": (
        "SELECT l.id AS line_id, e.currency AS entry, a.currency AS account FROM journal_lines l "
        "JOIN journal_entries e ON e.id = l.entry_id JOIN accounts a ON a.id = l.account_id "
        "WHERE a.currency <> e.currency",
        "every line's account is in its entry's currency",
    ),
    "currency_totals": (
        "SELECT e.currency, SUM(l.amount) AS total FROM journal_lines l "
        "JOIN journal_entries e ON e.id = l.entry_id GROUP BY e.currency HAVING SUM(l.amount) <> 0",
        "all entries of a currency sum to zero",
    ),
    "cached_balances": (
        "SELECT a.id, a.balance, COALESCE(s.total, 0) AS lines FROM accounts a LEFT JOIN "
        "(SELECT account_id, SUM(amount) AS total FROM journal_lines GROUP BY account_id) s "
        "ON s.account_id = a.id WHERE a.balance <> COALESCE(s.total, 0)",
        "an account's cached balance equals the sum of its lines",
    ),
    "usage_once": (
        "SELECT meter_id, seq, COUNT(*) AS n FROM journal_entries WHERE kind = 'usage' "
        "GROUP BY meter_id, seq HAVING COUNT(*) > 1 OR meter_id IS NULL OR seq IS NULL",
        "a (meter, seq) is posted at most once, as one usage entry",
    ),
    "usage_recorded": (
        "SELECT e.id FROM journal_entries e LEFT JOIN posted_usage p ON p.entry_id = e.id "
        "WHERE e.kind = 'usage' AND (p.entry_id IS NULL OR p.meter_id <> e.meter_id "
        "OR p.seq <> e.seq)",
        "every usage entry has its (meter, seq) row in posted_usage",
    ),
    "usage_shares": (
        "SELECT l.entry_id, l.account_id, l.amount FROM journal_lines l "
        "JOIN journal_entries e ON e.id = l.entry_id JOIN accounts a ON a.id = l.account_id "
        "WHERE e.kind = 'usage' AND a.kind = 'provider' AND l.amount < 0",
        "no provider share of a usage charge is negative",
    ),
    "energy": (
        "SELECT meter_id, seq, import_start, import_end, prev_end FROM (SELECT meter_id, seq, "
        "import_start, import_end, LAG(seq) OVER w AS prev_seq, LAG(import_end) OVER w AS "
        "prev_end FROM posted_usage WINDOW w AS (PARTITION BY meter_id ORDER BY seq)) t "
        "WHERE import_end < import_start OR (seq = prev_seq + 1 AND import_start > prev_end)",
        "energy posted for a meter equals its register span: no negative interval, and no "
        "energy skipped between consecutive records (a register going back is a reset)",
    ),
    "idempotency_keys": (
        "SELECT idempotency_key, COUNT(*) AS n FROM journal_entries "
        "WHERE idempotency_key IS NOT NULL GROUP BY idempotency_key HAVING COUNT(*) > 1",
        "an idempotency key names one entry",
    ),
    "reversals": (
        "SELECT r.id, l.account_id, SUM(l.amount) AS net FROM journal_entries r "
        "JOIN journal_lines l ON l.entry_id = r.id OR l.entry_id = r.reverses_id "
        "WHERE r.reverses_id IS NOT NULL GROUP BY r.id, l.account_id HAVING SUM(l.amount) <> 0",
        "a reversal is the exact negation of the entry it reverses",
    ),
    "allocations": (
        "SELECT p.id, p.status, p.amount, p.credit, COALESCE(a.paid, 0) AS paid, "
        "COALESCE(a.total, 0) AS total FROM payments p LEFT JOIN (SELECT payment_id, "
        "SUM(CASE WHEN source = 'payment' THEN amount ELSE 0 END) AS paid, SUM(amount) AS total "
        "FROM payment_allocations GROUP BY payment_id) a ON a.payment_id = p.id "
        "WHERE (p.status = 'credited' AND (p.entry_id IS NULL OR p.credit < 0 "
        "OR COALESCE(a.paid, 0) <> p.amount - p.credit OR COALESCE(a.total, 0) > p.amount)) "
        "OR (p.status <> 'credited' AND (p.entry_id IS NOT NULL OR COALESCE(a.total, 0) <> 0))",
        "a credited payment's allocations plus its credit equal its amount, and carried credit "
        "never allocates more than the payment; a pending or refused one moved no money",
    ),
    "allocation_entries": (
        "SELECT l.entry_id, l.account_id, l.amount, COALESCE(a.total, 0) AS allocated "
        "FROM journal_lines l JOIN journal_entries e ON e.id = l.entry_id LEFT JOIN "
        "(SELECT entry_id, provider_id, SUM(amount) AS total FROM payment_allocations "
        "GROUP BY entry_id, provider_id) a ON a.entry_id = l.entry_id "
        "AND 'collected:' || a.provider_id = l.account_id "
        "WHERE e.kind = 'allocation' AND l.amount > 0 AND l.amount <> COALESCE(a.total, 0)",
        "each allocation entry credits every provider's collected account with exactly that "
        "provider's allocations",
    ),
    "bill_allocations": (
        "SELECT a.bill_id, a.provider_id, a.total, COALESCE(c.charged, 0) AS charged FROM "
        "(SELECT bill_id, provider_id, SUM(amount) AS total FROM payment_allocations "
        "GROUP BY bill_id, provider_id) a LEFT JOIN (SELECT bill_id, provider_id, "
        "SUM(amount) AS charged FROM bill_lines WHERE kind <> 'payment' "
        "GROUP BY bill_id, provider_id) c ON c.bill_id = a.bill_id "
        "AND c.provider_id = a.provider_id WHERE a.total > COALESCE(c.charged, 0)",
        "no provider is allocated more on a bill than it charged on it",
    ),
}

# Invariant 6 per register segment (posted_usage.segment, hub.rating.register): in seq order,
# each record starts at or after the end of the one before it in its segment (no Wh posted
# twice) and, when their seqs are consecutive, exactly there (no Wh skipped); segments follow
# each other in seq order. So a segment's posted energy plus what its missing seqs left out
# equals its register span, MAX(import_end) - MIN(import_start). One row per (meter, segment)
# that breaks it, with the first offending seq.
_SEGMENT_ROWS = (
    "SELECT meter_id, segment, seq, import_start, import_end, "
    "CASE WHEN segment = prev_segment AND seq > prev_seq + 1 AND import_start > prev_end "
    "THEN import_start - prev_end ELSE 0 END AS unposted, "
    "CASE WHEN import_end < import_start OR segment < prev_segment OR (segment = prev_segment "
    "AND (import_start < prev_end OR (seq = prev_seq + 1 AND import_start <> prev_end))) "
    "THEN 1 ELSE 0 END AS bad FROM (SELECT meter_id, segment, seq, import_start, import_end, "
    "LAG(seq) OVER w AS prev_seq, LAG(segment) OVER w AS prev_segment, LAG(import_end) OVER w "
    "AS prev_end FROM posted_usage WINDOW w AS (PARTITION BY meter_id ORDER BY seq)) t"
)
_SEGMENTS = (
    "SELECT meter_id, segment, MIN(seq) AS first_seq, MAX(seq) AS last_seq, "
    "CAST(SUM(import_end - import_start) AS BIGINT) AS posted_wh, "
    "CAST(SUM(unposted) AS BIGINT) AS unposted_wh, "
    "MAX(import_end) - MIN(import_start) AS register_wh, "
    "MIN(CASE WHEN bad = 1 THEN seq END) AS bad_seq "
    f"FROM ({_SEGMENT_ROWS}) r GROUP BY meter_id, segment"
)
_SEGMENT_VIOLATIONS = (
    f"{_SEGMENTS} HAVING MAX(bad) = 1 OR SUM(import_end - import_start) + SUM(unposted) "
    "<> MAX(import_end) - MIN(import_start) ORDER BY meter_id, segment"
)
_SEGMENT_TOTALS = (
    "SELECT COUNT(DISTINCT meter_id) AS meters, COUNT(*) AS segments, "
    "COALESCE(SUM(posted_wh), 0) AS posted_wh, COALESCE(SUM(unposted_wh), 0) AS unposted_wh, "
    f"COALESCE(SUM(register_wh), 0) AS register_wh FROM ({_SEGMENTS}) s"
)

_ENERGY_TOTALS = (
    "SELECT COUNT(DISTINCT meter_id) AS meters, COALESCE(SUM(import_end - import_start), 0) AS "
    "posted_wh, COALESCE(SUM(CASE WHEN seq = prev_seq + 1 AND import_start < prev_end THEN 1 "
    "ELSE 0 END), 0) AS resets, COALESCE(SUM(CASE WHEN seq > prev_seq + 1 THEN 1 ELSE 0 END), 0) "
    "AS pending_gaps FROM (SELECT meter_id, seq, import_start, import_end, LAG(seq) OVER w AS "
    "prev_seq, LAG(import_end) OVER w AS prev_end FROM posted_usage "
    "WINDOW w AS (PARTITION BY meter_id ORDER BY seq)) t"
)


# Invariant 9, second half: a protected customer's meter is never left cut off by credit
# control or by the agent's own credit rules (an operator may still disconnect it). A meter
# violates it when its latest disconnect/reconnect event is an automatic disconnect.
_PROTECTED = (
    "SELECT m.id AS meter, c.id AS customer, e.id AS event FROM meters m "
    "JOIN customers c ON c.id = m.customer_id "
    "JOIN events e ON e.id = (SELECT MAX(x.id) FROM events x WHERE x.meter_id = m.id "
    "AND x.kind IN ('disconnect', 'reconnect')) "
    "WHERE c.protected AND e.kind = 'disconnect' "
    "AND ({by} = 'credit_control' OR {cause} = 'credit')"
)


# Invariant 9: only consumption (usage, standing charges) and corrections (reversals) may take a
# balance below its floor: energy already delivered in friendly hours, to a protected customer,
# in a grace period or before the gateway cut off is never refused; it is debt. Every other
# debit (alternate draw, transfer, debt recovery, adjustment) must leave the account at or above
# the floor in force when it was posted (recorded in the entry's metadata by ``post``; the
# account's floor for entries without it). Checked line by line: the balance after each debit.
_FLOORS = (
    "SELECT account_id AS id, MIN(after) AS balance, floor FROM (SELECT l.account_id, "
    "COALESCE(CAST({floor_then} AS BIGINT), a.floor) AS floor, "
    "(SELECT CAST(SUM(x.amount) AS BIGINT) FROM journal_lines x "
    "WHERE x.account_id = l.account_id AND x.id <= l.id) AS after FROM journal_lines l "
    "JOIN accounts a ON a.id = l.account_id "
    "JOIN journal_entries e ON e.id = l.entry_id "
    "WHERE l.amount < 0 AND e.kind NOT IN ('usage', 'standing', 'reversal')) t "
    "WHERE floor IS NOT NULL AND after < floor GROUP BY account_id, floor"
)


def _floors_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return _FLOORS.format(floor_then="e.metadata -> 'floors' ->> l.account_id")
    return _FLOORS.format(
        floor_then="json_extract(e.metadata, '$.floors.\"' || l.account_id || '\"')"
    )


def _protected_sql(dialect: str) -> str:
    if dialect == "postgresql":
        return _PROTECTED.format(by="e.data->>'by'", cause="e.data->>'cause'")
    return _PROTECTED.format(by="json_extract(e.data, '$.by')",
                             cause="json_extract(e.data, '$.cause')")  # fmt: skip


def check_invariants(db: Executor) -> dict[str, Any]:
    """``{"ok": bool, "checks": {name: {"ok": bool, "detail": {...}}}}``."""
    conn = conn_of(db)
    checks: dict[str, dict[str, Any]] = {}
    violations = {**_VIOLATIONS, "floors": (
        _floors_sql(conn.dialect.name),
        "no debit but consumption or a reversal leaves a balance below the floor in force "
        "when it was posted (emergency credit lowers the floor; usage past it is debt)",
    ), "protected_supply": (
        _protected_sql(conn.dialect.name),
        "a protected customer is never cut off automatically (an operator alert instead)",
    ), "energy_follows_register": (
        _SEGMENT_VIOLATIONS,
        "within each register segment of a meter, posted spans follow each other in seq "
        "order without overlapping, so posted energy plus the energy of missing seqs equals "
        "the segment's register span; a register going back starts a new segment only where "
        "the hub accepted a reported reset",
    )}  # fmt: skip
    for name, (sql, rule) in violations.items():
        rows = conn.execute(text(sql)).mappings().all()
        detail: dict[str, Any] = {"rule": rule, "violations": len(rows)}
        if rows:
            detail["sample"] = [{k: _plain(v) for k, v in r.items()} for r in rows[:SAMPLE]]
        checks[name] = {"ok": not rows, "detail": detail}
    totals = conn.execute(text(_ENERGY_TOTALS)).mappings().one()
    checks["energy"]["detail"].update({k: int(v) for k, v in totals.items()})
    segments = conn.execute(text(_SEGMENT_TOTALS)).mappings().one()
    checks["energy_follows_register"]["detail"].update({k: int(v) for k, v in segments.items()})
    counts = conn.execute(
        text("SELECT (SELECT COUNT(*) FROM journal_entries) AS entries, "
             "(SELECT COUNT(*) FROM journal_lines) AS lines, "
             "(SELECT COUNT(*) FROM accounts) AS accounts")
    ).mappings().one()  # fmt: skip
    checks["entries_balance"]["detail"].update({k: int(v) for k, v in counts.items()})
    return {"ok": all(c["ok"] for c in checks.values()), "checks": checks}


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)
