"""A tariff update's fan-out: every meter on the tariff is sent its new credit state in the
transaction that wrote the version (``hub.control.credit_state.queue_tariff_update``).

Seeds ``--gateways`` x ``--meters`` meters on one tariff (SQLite file and a throwaway
PostgreSQL), then times ``queue_tariff_update`` and counts the SQL statements it ran; prints
a table and writes ``bench/results/credit_fanout.json``. At ten million meters a tariff update
reaches millions of meters in one transaction, so what matters is statements and time per
meter.

    python -m bench.credit_fanout [--gateways 20] [--meters 250] [--db sqlite,postgres]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

from bench.hub_ingest import postgres
from hub.control.credit_state import queue_tariff_update
from hub.db import make_engine, migrate
from tests.hub.seed import seed_world

RESULTS = Path(__file__).resolve().parent / "results" / "credit_fanout.json"


def measure(engine: Engine, gateways: int, meters: int) -> dict[str, Any]:
    world = seed_world(engine, gateways=gateways, meters_per_gateway=meters)
    statements = [0]

    def count(*_: Any) -> None:
        statements[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        queued = queue_tariff_update(engine, world.tariff.id)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        event.remove(engine, "before_cursor_execute", count)
    n = max(1, queued)
    return {"meters": len(world.meters), "queued": queued, "wall_s": round(wall, 3),
            "us_per_meter": round(wall * 1e6 / n), "cpu_us_per_meter": round(cpu * 1e6 / n),
            "statements": statements[0],
            "statements_per_meter": round(statements[0] / n, 3)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.credit_fanout")
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--meters", type=int, default=250, help="meters per gateway")
    parser.add_argument("--db", default="sqlite,postgres")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="smsa-fanout-"))
    for db in args.db.split(","):
        if db == "sqlite":
            url = f"sqlite:///{tmp / 'hub.db'}"
            migrate(url)
            engine = make_engine(url)
            rows[db] = measure(engine, args.gateways, args.meters)
            engine.dispose()
        else:
            with postgres() as (_, url):
                migrate(url)
                engine = make_engine(url)
                rows[db] = measure(engine, args.gateways, args.meters)
                engine.dispose()
    print(f"{'db':<10}{'meters':>8}{'wall s':>9}{'us/meter':>10}{'cpu us/meter':>14}"
          f"{'statements/meter':>18}")  # fmt: skip
    for db, r in rows.items():
        print(f"{db:<10}{r['queued']:>8}{r['wall_s']:>9}{r['us_per_meter']:>10}"
              f"{r['cpu_us_per_meter']:>14}{r['statements_per_meter']:>18}")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "credit_fanout", **rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
