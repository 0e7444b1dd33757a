"""Where the server's time goes inserting usage journal entries: the idempotency key and the
reversal link unique where set (partial unique indexes, migration 0940) against unique
constraints on every row (the schema before it).

Starts a throwaway PostgreSQL, migrates it, seeds 1,000 meters and ``--before`` usage entries,
and inserts ``--entries`` more in one ``INSERT ... SELECT FROM unnest(...)`` statement, as the
ingest's batches do (``hub.ledger.usage``), under ``EXPLAIN (ANALYZE, BUFFERS, WAL)``: once at
head, once with the unique constraints put back in place of the partial indexes (in a
transaction rolled back), alternately, best of ``--runs`` each. Usage entries set neither
column, so the constraints index a NULL of each into each of the two. Prints each schema's
time and WAL per entry and writes ``bench/results/pg_entries.json``.

    python -m bench.pg_entries [--entries 10000] [--before 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psycopg

from bench.hub_ingest import postgres
from bench.pg_stats import dsn_of, explained
from hub.db import make_engine, migrate
from hub.migrations.compare import PARTIAL_UNIQUE
from tests.hub.seed import seed_world

RESULTS = Path(__file__).resolve().parent / "results" / "pg_entries.json"

INSERT = """INSERT INTO journal_entries (kind, currency, created_at, effective_at, meter_id, seq,
                             idempotency_key, reverses_id, memo, metadata)
SELECT 'usage', 'USD', now(), now(), m, s, NULL, NULL, '', NULL
FROM unnest(%s::text[], %s::bigint[]) AS u(m, s)"""


def _constraints(conn: psycopg.Connection[Any]) -> None:
    """The schema before migration 0940: a unique constraint of each column."""
    for name in sorted(PARTIAL_UNIQUE):
        column = name.removeprefix("uq_journal_entries_")
        conn.execute(f"DROP INDEX {name}".encode())
        conn.execute(f"ALTER TABLE journal_entries ADD CONSTRAINT {name} "
                     f"UNIQUE ({column})".encode())  # fmt: skip


def _rows(meters: list[str], n: int, first_seq: int) -> tuple[list[str], list[int]]:
    return [meters[i % len(meters)] for i in range(n)], [first_seq + i for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_entries")
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--before", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    if min(args.entries, args.runs) < 1 or args.before < 0:
        parser.error("--entries and --runs must be at least 1, --before at least 0")
    runs: dict[str, list[dict[str, Any]]] = {"partial_indexes": [], "unique_constraints": []}
    with postgres() as (_, url):
        migrate(url)
        engine = make_engine(url)
        seed_world(engine, gateways=20, meters_per_gateway=50)
        engine.dispose()
        with psycopg.connect(dsn_of(url), autocommit=True) as conn:
            meters = [r[0] for r in conn.execute(b"SELECT id FROM meters ORDER BY id")]
            conn.execute(INSERT.encode(), _rows(meters, args.before, 1))
            conn.execute(b"VACUUM ANALYZE journal_entries")
        rows = _rows(meters, args.entries, args.before + 1)
        with psycopg.connect(dsn_of(url)) as conn:
            for _ in range(args.runs):
                for mode, results in runs.items():
                    with conn.transaction(force_rollback=True):
                        if mode == "unique_constraints":
                            _constraints(conn)
                        results.append(explained(conn, INSERT, rows))
    best = {mode: min(r, key=lambda x: x["execution_ms"]) for mode, r in runs.items()}
    out: dict[str, Any] = {"entries": args.entries, "before": args.before, "runs": args.runs}
    for mode, b in best.items():
        out[mode] = {"execution_ms": b["execution_ms"],
                     "us_per_entry": round(b["execution_ms"] * 1000 / args.entries, 2),
                     "wal_records_per_entry": round(b["wal"]["records"] / args.entries, 2),
                     "wal_bytes_per_entry": round(b["wal"]["bytes"] / args.entries),
                     "all_ms": [r["execution_ms"] for r in runs[mode]]}  # fmt: skip
    out["plans"] = {mode: b["plan"] for mode, b in best.items()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'schema':>20}{'ms':>9}{'us/entry':>10}{'WAL rec/entry':>15}{'WAL B/entry':>13}")
    for mode in runs:
        r = out[mode]
        print(f"{mode:>20}{r['execution_ms']:>9.1f}{r['us_per_entry']:>10}"
              f"{r['wal_records_per_entry']:>15}{r['wal_bytes_per_entry']:>13}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
