"""Where the server's time goes inserting journal lines: per-row foreign keys against the
statement-level reference triggers of migration 0860 (``hub.migrations.refs``).

Starts a throwaway PostgreSQL, migrates it, seeds 1,000 meters, and inserts ``--lines`` journal
lines (``--entries`` entries, lines spread over the customers and four providers, as usage
posts them) in one ``INSERT ... SELECT FROM unnest(...)`` statement, as the ingest's batches
do (``hub.ledger.bulk``), under ``EXPLAIN (ANALYZE, BUFFERS, WAL)``: once with the triggers (the
schema at head), once with the foreign keys put back and the triggers disabled (in a
transaction rolled back), best of ``--runs`` each. Prints the plans' execution and trigger
times and writes ``bench/results/pg_refs.json``.

    python -m bench.pg_refs [--lines 30000] [--entries 6000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psycopg

from bench.hub_ingest import postgres
from bench.pg_stats import explained
from hub.db import make_engine, migrate
from hub.migrations.refs import CHECKED, constraint_name
from tests.hub.seed import seed_world

RESULTS = Path(__file__).resolve().parent / "results" / "pg_refs.json"
PROVIDERS = ("provider:gen", "provider:grid", "provider:retail", "provider:tax")

INSERT = """INSERT INTO journal_lines (entry_id, account_id, amount)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[])"""


def _plan(conn: psycopg.Connection[Any], entries: list[int], accounts: list[str],
          lines: int) -> dict[str, Any]:  # fmt: skip
    ids = [entries[i % len(entries)] for i in range(lines)]
    who = [accounts[i % len(accounts)] for i in range(lines)]
    found = explained(conn, INSERT, (ids, who, [1] * lines))
    return {**found, "us_per_line": found["execution_ms"] * 1000 / lines}


def _setup(dsn: str, entries: int) -> tuple[list[int], list[str]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        meters = [r[0] for r in conn.execute("SELECT id FROM meters ORDER BY id")]
        ids = [
            r[0] for r in conn.execute(
                "INSERT INTO journal_entries (kind, currency, created_at, effective_at, meter_id,"
                " memo) SELECT 'usage', 'USD', now(), now(), m, '' FROM unnest(%s::text[]) m "
                "RETURNING id", ([meters[i % len(meters)] for i in range(entries)],),
            )
        ]  # fmt: skip
        customers = [r[0] for r in conn.execute("SELECT id FROM accounts WHERE id LIKE 'c-%'")]
    return ids, [*customers, *PROVIDERS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_refs")
    parser.add_argument("--lines", type=int, default=30_000)
    parser.add_argument("--entries", type=int, default=6_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with postgres() as (_, url):
        migrate(url)
        engine = make_engine(url)
        seed_world(engine, gateways=20, meters_per_gateway=50)
        engine.dispose()
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        entries, accounts = _setup(dsn, args.entries)
        runs: dict[str, list[dict[str, Any]]] = {"triggers": [], "foreign_keys": []}
        with psycopg.connect(dsn) as conn:
            for _ in range(args.runs):
                for mode, results in runs.items():
                    with conn.transaction(force_rollback=True):
                        if mode == "foreign_keys":
                            conn.execute(
                                "ALTER TABLE journal_lines DISABLE TRIGGER journal_lines_refs"
                            )
                            for table, column, target in CHECKED:
                                if table == "journal_lines":
                                    conn.execute(
                                        f"ALTER TABLE {table} ADD CONSTRAINT "
                                        f"{constraint_name(table, column, target)} FOREIGN KEY "
                                        f"({column}) REFERENCES {target} (id)"
                                    )
                        results.append(_plan(conn, entries, accounts, args.lines))
    best = {mode: min(r, key=lambda x: x["execution_ms"]) for mode, r in runs.items()}
    out = {"lines": args.lines, "entries": args.entries, "runs": args.runs,
           **{mode: {k: v for k, v in b.items() if k != "plan"} for mode, b in best.items()},
           "plans": {mode: b["plan"] for mode, b in best.items()}}  # fmt: skip
    out["ratio"] = best["foreign_keys"]["execution_ms"] / best["triggers"]["execution_ms"]
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for mode, b in best.items():
        print(f"{mode:>13}: {b['execution_ms']:8.1f} ms, {b['us_per_line']:5.2f} us a line, "
              f"triggers {b['triggers_ms']}")  # fmt: skip
    print(f"foreign keys / triggers: {out['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
