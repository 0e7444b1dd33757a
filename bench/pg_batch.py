"""PostgreSQL's CPU per settled usage record in the fleet's shape, and where it goes.

Starts a throwaway PostgreSQL with ``pg_stat_statements`` (``bench.pg_stats``), seeds
``--gateways`` x ``--meters`` meters and settles rounds of usage as ``bench.fleet``'s gateways
send it: per round one message per gateway holding one 15-minute record per meter, in batches
of ``--batch`` messages through the ingest's ``BatchProcessor`` (one settler, in this process).
After each batch of every ``--credit-every``th round the batch's credit states are queued in
the command table and marked sent, as the ingest coordinator and the dispatcher do
(``hub.commands.store``: ``enqueue_many``, ``due``, ``mark_sent``); ``bench.fleet`` at 4,000
records/s queues about one for every fourth record (at most one per meter every 5 s). A first
round (the hub's first sight of every meter) is settled, then ``--rounds`` are measured.

Reports the server's CPU per settled record (user and system time of all its processes from
``/proc``, background workers included), this process's own CPU per record, and the
per-statement breakdown per 10,000 records (``--no-stats``: without ``pg_stat_statements``,
whose own overhead is then left out). Writes ``bench/results/pg_batch.json``.

    python -m bench.pg_batch [--gateways 1000] [--meters 10] [--batch 450] [--rounds 8]
                             [--credit-every 4] [--no-stats]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import pg_stats
from bench.hub_ingest import T0, postgres, server_cpu_s
from hub.commands.store import due, enqueue_many, mark_sent
from hub.control.credit_state import credit_command_for
from hub.db import make_engine, migrate, write_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.credit_report import to_meter_credit
from hub.ingest.model import CreditInfo, Inbound
from tests.hub.seed import seed_world

RESULTS = Path(__file__).resolve().parent / "results" / "pg_batch.json"
TTL = timedelta(hours=1)


def _round(gateways: list[str], meters: int, r: int) -> list[Inbound]:
    """Round ``r``: each gateway's message of one record per meter (``bench.fleet``'s)."""
    start = T0 + timedelta(minutes=15 * r)
    s, e = start.isoformat(), (start + timedelta(minutes=15)).isoformat()
    reg = 1000 + r * 137
    now = datetime.now(UTC)
    out = []
    for gw in gateways:
        records = ",".join(
            f'{{"meter":"{gw}-m{m}","seq":{r + 1},"start":"{s}","end":"{e}",'
            f'"import_start":{reg},"import_end":{reg + 137}}}'
            for m in range(meters)
        )
        out.append(Inbound(f"smsa/v1/gw/{gw}/usage", f'{{"v":1,"records":[{records}]}}'.encode(),
                           now))  # fmt: skip
    return out


def _settle(
    processor: BatchProcessor, engine: Any, messages: list[Inbound], batch: int, credit: bool
) -> int:
    """Settle ``messages`` in batches, each followed by its credit states if ``credit``;
    the records posted."""
    posted = 0
    for i in range(0, len(messages), batch):
        outcome = processor.process(messages[i : i + batch])
        posted += outcome.counts["posted"]
        infos = [c for c in outcome.credit.values()
                 if isinstance(c, CreditInfo) and c.command_key and credit]  # fmt: skip
        with write_tx(engine) as conn:
            enqueue_many(conn, [(c.gateway_id, credit_command_for(to_meter_credit(c), ttl=TTL))
                                for c in infos])  # fmt: skip
        while True:  # the dispatcher: take what is due, publish (not here), mark it sent
            with write_tx(engine) as conn:
                ids = [d.id for d in due(conn, datetime.now(UTC))]
                mark_sent(conn, ids, datetime.now(UTC))
            if not ids:
                break
    return posted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_batch")
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--meters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=450, help="messages a batch")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument(
        "--credit-every",
        type=int,
        default=4,
        help="credit states after every Nth round (the fleet: one per 4 records)",
    )
    parser.add_argument("--no-stats", action="store_true", help="without pg_stat_statements")
    args = parser.parse_args(argv)
    stats = not args.no_stats
    with postgres(stats=stats) as (data, url):
        migrate(url)
        engine = make_engine(url)
        world = seed_world(engine, gateways=args.gateways, meters_per_gateway=args.meters)
        gateways = sorted(world.gateways, key=lambda g: int(g.split("-")[1]))
        processor = BatchProcessor(engine, credit_refresh_s=0)  # every state sent, as measured
        _settle(processor, engine, _round(gateways, args.meters, 0), args.batch, True)  # warm-up
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
        if stats:
            pg_stats.reset(url)
        server0, own0, wall0 = server_cpu_s(data), time.process_time(), time.monotonic()
        posted = 0
        for r in range(1, args.rounds + 1):
            posted += _settle(processor, engine, _round(gateways, args.meters, r), args.batch,
                              r % args.credit_every == 0)  # fmt: skip
        server = server_cpu_s(data) - server0
        own, wall = time.process_time() - own0, time.monotonic() - wall0
        statements = pg_stats.breakdown(url, posted) if stats else []
        with engine.connect() as conn:
            hot = {t: f"{h} of {u}" for t, u, h in conn.exec_driver_sql(
                "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE "
                "relname IN ('accounts', 'meters', 'meter_carry') ORDER BY relname")}  # fmt: skip
        engine.dispose()
    out = {
        "benchmark": "pg_batch", "gateways": args.gateways, "meters": args.meters,
        "batch_messages": args.batch, "records": posted,
        "postgres_us_per_record": round(server * 1e6 / posted, 1),
        "settler_us_per_record": round(own * 1e6 / posted, 1),
        "records_per_s": round(posted / wall), "hot_updates": hot, "statements": statements,
    }  # fmt: skip
    print(
        f"{posted} records: PostgreSQL {out['postgres_us_per_record']} us a record, this "
        f"process {out['settler_us_per_record']} us, {out['records_per_s']} records/s"
    )
    print(
        "HOT updates (since the server started): " + ", ".join(f"{t} {v}" for t, v in hot.items())
    )
    if statements:
        print(pg_stats.table(statements))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
