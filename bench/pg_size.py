"""What the journal costs on PostgreSQL as it grows: bytes per settled record and the ledger
check's time, at several sizes, for the projection in ``docs/scaling.md``.

Starts a throwaway PostgreSQL, seeds ``--gateways`` x ``--meters`` meters and settles usage
records through the ingest's ``BatchProcessor`` in batches of 10,000 (one record a message, in
seq order) up to each of ``--sizes`` records; at each size it measures the journal tables'
size on disk (``pg_total_relation_size``: heap, indexes, TOAST) and times
``check_invariants`` (what ``GET /api/v1/ledger/check`` and the 5-minute job compute), best of
two. Writes ``bench/results/pg_size.json``.

    python -m bench.pg_size [--sizes 20000,60000] [--gateways 20] [--meters 50]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.hub_ingest import T0, postgres
from hub.db import make_engine, migrate, read_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.ledger import check_invariants
from tests.hub.seed import seed_world

RESULTS = Path(__file__).resolve().parent / "results" / "pg_size.json"
TABLES = ("journal_entries", "journal_lines", "posted_usage")
BATCH = 10_000


def _messages(meters: list[tuple[str, str]], first: int, n: int) -> list[Inbound]:
    now = datetime.now(UTC)
    out = []
    for i in range(first, first + n):
        meter, gw = meters[i % len(meters)]
        r = i // len(meters)
        start = T0 + timedelta(minutes=15 * r)
        reg = 1000 + r * 137
        payload = json.dumps({"v": 1, "records": [{
            "meter": meter, "seq": r + 1, "start": start.isoformat(),
            "end": (start + timedelta(minutes=15)).isoformat(),
            "import_start": reg, "import_end": reg + 137}]}).encode()  # fmt: skip
        out.append(Inbound(f"smsa/v1/gw/{gw}/usage", payload, now))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_size")
    parser.add_argument("--sizes", default="20000,60000")
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--meters", type=int, default=50)
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    points: list[dict[str, Any]] = []
    with postgres() as (_, url):
        migrate(url)
        engine = make_engine(url)
        world = seed_world(engine, gateways=args.gateways, meters_per_gateway=args.meters)
        meters = sorted(world.meters.items())
        processor = BatchProcessor(engine)
        done = 0
        for size in sizes:
            started = time.monotonic()
            while done < size:
                n = min(BATCH, size - done)
                processor.process(_messages(meters, done, n))
                done += n
            settle_s = time.monotonic() - started
            with read_tx(engine) as conn:
                conn.exec_driver_sql("ANALYZE")
                rows = {t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one())
                        for t in TABLES}  # fmt: skip
                sql = "SELECT pg_total_relation_size('{}')"
                size_b = {t: int(conn.exec_driver_sql(sql.format(t)).scalar_one()) for t in TABLES}
            times = []
            for _ in range(2):
                with read_tx(engine) as conn:
                    t = time.monotonic()
                    report = check_invariants(conn)
                    times.append(time.monotonic() - t)
            points.append({
                "records": size, "rows": rows, "bytes": size_b,
                "bytes_per_record": round(sum(size_b.values()) / size),
                "check_s": round(min(times), 3), "check_ok": bool(report["ok"]),
                "settled_records_per_s_in_process": round((size - (points[-1]["records"]
                    if points else 0)) / settle_s),
            })  # fmt: skip
            print(json.dumps(points[-1]), flush=True)
        engine.dispose()
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "pg_size", "points": points}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
