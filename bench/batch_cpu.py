"""CPU of settling alone: ``BatchProcessor.process`` in this process, on a SQLite file, without
broker, pump or other settlers, so the figure moves little on a busy machine (process CPU time,
not wall time). 20 gateways x 50 meters (as ``bench.hub_ingest``), batches of 10,000 one-record
usage messages in seq order; the first two batches warm caches and are not counted.
``--current``: each record carries the agent's mean current (``current_mean_a``).

    python -m bench.batch_cpu [--batches 8] [--current]

Prints the settling CPU per record. Not part of ``make bench`` (no goal): run it in two checkouts
to compare a change to the settling path (``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta

from hub.db import make_engine, migrate
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from protocol.topics import topic
from tests.hub.seed import seed_world

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
PER_METER = 10  # records of each meter in a batch: 10 x 1,000 meters = 10,000


def batch(
    meters: list[tuple[str, str]], first_seq: int, now: datetime, current: bool = False
) -> list[Inbound]:
    items = []
    for seq in range(first_seq, first_seq + PER_METER):
        start = T0 + STEP * (seq - 1)
        for meter, gateway in meters:
            record = {"meter": meter, "seq": seq, "start": start.isoformat(),
                      "end": (start + STEP).isoformat(), "import_start": 1000 + 100 * (seq - 1),
                      "import_end": 1000 + 100 * seq}  # fmt: skip
            if current:
                record["current_mean_a"] = 1.733
            payload = json.dumps({"v": 1, "records": [record]}).encode()
            items.append(Inbound(topic(gateway, "usage"), payload, now))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=8, help="counted batches (after 2)")
    parser.add_argument("--current", action="store_true", help="records carry current_mean_a")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        migrate(url)
        engine = make_engine(url)
        world = seed_world(engine, gateways=20, meters_per_gateway=50)
        processor = BatchProcessor(engine)
        meters = sorted(world.meters.items())
        now = datetime.now(UTC)
        cpu, records = 0.0, 0
        for n in range(args.batches + 2):
            items = batch(meters, n * PER_METER + 1, now, args.current)
            before = time.process_time()
            outcome = processor.process(items, now)
            spent = time.process_time() - before
            if outcome.counts["posted"] != len(items):
                raise SystemExit(f"batch {n}: {dict(outcome.counts)}")
            if n >= 2:
                cpu, records = cpu + spent, records + len(items)
        engine.dispose()
    print(f"settling: {cpu / records * 1e6:.1f} us CPU per record ({records} records)")


if __name__ == "__main__":
    main()
