"""Run the ingest service alone: ``python -m hub.ingest.runner --db URL --mqtt URL``.

For tests (kill -9 of a hub in the middle of a batch) and benchmarks; ``smsa-hub serve``
runs the same service next to the HTTP API. Prints ``ready`` on stdout once subscribed, then
runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from types import FrameType

from hub.db import make_engine, migrate
from hub.errors import HubError
from hub.ingest.service import IngestService


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub.ingest.runner")
    parser.add_argument("--db", required=True)
    parser.add_argument("--mqtt", required=True)
    parser.add_argument("--client-id", default="smsa-hub")
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--batch-wait", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2, help="settling processes")
    parser.add_argument("--currency", default="USD")
    parser.add_argument("--group", help="settle as one member of this ingest group (PostgreSQL)")
    parser.add_argument("--credit-interval", type=float, default=5.0)
    parser.add_argument("--migrate", action="store_true", help="create or upgrade the schema")
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--counters", action="store_true", help="print counters on exit")
    parser.add_argument(
        "--progress",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help='print {"posted": N, "at": UNIX_TIME} whenever the posted count changed, at most '
        "this often (benchmarks read it instead of querying the database while it is loaded)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    stop = threading.Event()

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if args.migrate:
            migrate(args.db)
        engine = make_engine(args.db)
        service = IngestService(engine, args.mqtt, args.client_id, args.batch_size,
                                args.batch_wait, args.currency,
                                credit_interval_s=args.credit_interval,
                                workers=args.workers, group=args.group)  # fmt: skip
    except (HubError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    service.start()
    try:
        if not service.wait_connected(30):
            print("error: could not connect to the broker", file=sys.stderr)
            return 1
        print("ready", flush=True)
        wake = args.progress if args.progress > 0 else 0.5
        posted = 0
        while not stop.wait(wake):  # wake up now and then: signal handlers run in this thread
            if args.progress > 0 and service.counters["posted"] != posted:
                posted = service.counters["posted"]
                print(json.dumps({"posted": posted, "at": time.time()}), flush=True)
    finally:
        service.stop()
        if args.counters:
            cpu = {"process_cpu_ms": int(time.process_time() * 1000)}
            print(json.dumps({**service.counters, **cpu}), flush=True)
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
