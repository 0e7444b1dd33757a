"""Per-statement time of a PostgreSQL server, from ``pg_stat_statements``: which statements a
benchmark's database time went to, per 10,000 settled records.

A server started with ``STATS_OPTS`` (``bench.hub_ingest.postgres(stats=True)``)
tracks every statement, nested ones (trigger functions) included; ``reset`` zeroes the counts
(after a warm-up) and ``breakdown`` reads them back, largest total first.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg

STATS_OPTS = (
    "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
    "-c pg_stat_statements.max=2000 -c track_io_timing=off"
)
PER = 10_000  # records


def dsn_of(url: str) -> str:
    """The libpq DSN of a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def reset(url: str) -> None:
    with psycopg.connect(dsn_of(url), autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def breakdown(url: str, records: int, top: int = 40) -> list[dict[str, Any]]:
    """The ``top`` statements by total execution time since the last ``reset``: per ``PER``
    records settled in that time, their calls, rows and total ms, and their share of all
    statements' time (nested statements are counted inside their callers too)."""
    sql = """SELECT query, sum(calls), sum(rows), sum(total_exec_time) AS ms, toplevel,
                    sum(sum(total_exec_time)) FILTER (WHERE toplevel) OVER () AS all_ms
             FROM pg_stat_statements
             WHERE query NOT LIKE '%%pg_stat_statements%%'
             GROUP BY query, toplevel ORDER BY ms DESC LIMIT %s"""
    scale = PER / max(1, records)
    with psycopg.connect(dsn_of(url), autocommit=True) as conn:
        rows = conn.execute(sql, (top,)).fetchall()
    return [
        {
            "ms": round(float(ms) * scale, 1),
            "calls": round(float(calls) * scale, 1),
            "rows": round(float(n) * scale),
            "share": round(float(ms / all_ms), 3) if all_ms and toplevel else None,
            "toplevel": toplevel,
            "query": " ".join(query.split())[:300],
        }
        for query, calls, n, ms, toplevel, all_ms in rows
    ]


def wal(url: str) -> dict[str, int]:
    """The server's WAL and checkpoint counters since its start: WAL records, full-page images
    and bytes (``pg_stat_wal``), and checkpoints, timed and requested (``pg_stat_bgwriter``;
    ``pg_stat_checkpointer`` from PostgreSQL 17)."""
    with psycopg.connect(dsn_of(url), autocommit=True) as conn:
        records, fpi, size = conn.execute(
            "SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"
        ).fetchone() or (0, 0, 0)  # fmt: skip
        if (conn.info.server_version or 0) >= 170000:
            sql = "SELECT num_timed + num_requested FROM pg_stat_checkpointer"
        else:
            sql = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter"
        (checkpoints,) = conn.execute(sql).fetchone() or (0,)
    return {"wal_records": int(records), "full_page_images": int(fpi),
            "wal_bytes": int(size), "checkpoints": int(checkpoints)}  # fmt: skip


def wal_per_record(before: dict[str, int], after: dict[str, int], records: int) -> dict[str, Any]:
    """What :func:`wal` counted between ``before`` and ``after``, per record settled in that
    time, and the checkpoints in all."""
    per = max(1, records)
    grew = {k: after[k] - before[k] for k in before}
    return {
        "wal_records": round(grew["wal_records"] / per, 1),
        "full_page_images": round(grew["full_page_images"] / per, 3),
        "wal_bytes": round(grew["wal_bytes"] / per),
        "checkpoints": grew["checkpoints"],
    }


def explained(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> dict[str, Any]:
    """``sql`` run under ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` on ``conn`` (in the caller's
    transaction): its execution time, each trigger's time (ms), the WAL it wrote (its top
    node's records, full-page images and bytes) and the plan's text."""
    text = "\n".join(r[0] for r in conn.execute(
        f"EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT TEXT) {sql}".encode(), params))  # fmt: skip
    triggers = {
        name: float(t)
        for name, t in re.findall(r"Trigger (?:for constraint )?([^:\s]+): time=([\d.]+)", text)
    }
    total = re.search(r"Execution Time: ([\d.]+) ms", text)
    wal = re.search(r"WAL: records=(\d+)(?: fpi=(\d+))?(?: bytes=(\d+))?", text)
    records, fpi, size = (int(g or 0) for g in wal.groups()) if wal else (0, 0, 0)
    return {"execution_ms": float(total.group(1)) if total else 0.0, "triggers_ms": triggers,
            "wal": {"records": records, "full_page_images": fpi, "bytes": size},
            "plan": text}  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    """``breakdown`` as text lines: ms, calls and rows per PER records, then the statement."""
    out = [f"{'ms':>8} {'calls':>8} {'rows':>8}  statement (per {PER:,} records)"]
    for r in rows:
        nested = "" if r["toplevel"] else "  (nested)"
        out.append(f"{r['ms']:8.1f} {r['calls']:8.1f} {r['rows']:8d}  {r['query'][:150]}{nested}")
    return "\n".join(out)
