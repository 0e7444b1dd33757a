"""CPU of settling alone: ``BatchProcessor.process`` in this process, without broker, pump or
other settlers, so the figure moves little on a busy machine (process CPU time, not wall time).

Two shapes of batch:

* ``--shape backlog`` (default): 20 gateways x 50 meters (as ``bench.hub_ingest``), batches of
  10,000 one-record usage messages in seq order; the first two batches warm caches and are not
  counted.
* ``--shape fleet``: 1,000 gateways x 10 meters (``bench.fleet``'s shape), a message one report of
  a gateway (one record per meter, 10 records), batches of ``--messages`` messages (70: what
  each of two settlers took a batch in ``bench.fleet`` at 5,000 records/s with 30,000 meters,
  14.7 batches per 10,000 records; 10 is what one collects in ``batch_wait_s`` at a low rate),
  so a batch has one record per meter and its fixed costs count. Every gateway reports once
  per round; the first round (each meter's first record) is not counted.

``--db postgres`` settles on a throwaway PostgreSQL server (``bench.hub_ingest``), ``sqlite``
on a file. ``--current``: each record carries the agent's mean current (``current_mean_a``).

    python -m bench.batch_cpu [--db sqlite|postgres] [--shape backlog|fleet] [--batches N]
                              [--messages 70] [--current]

Prints the settling CPU per record. Not part of ``make bench`` (no goal): run it in two checkouts
to compare a change to the settling path (``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine

from bench.hub_ingest import postgres
from hub.commands.store import enqueue_many
from hub.control.credit_state import credit_command_for
from hub.db import make_engine, migrate, write_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.credit_report import to_meter_credit
from hub.ingest.model import CreditInfo, CreditReport, Inbound
from protocol.topics import topic
from tests.hub.seed import seed_world

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)
PER_METER = 10  # backlog: records of each meter in a batch: 10 x 1,000 meters = 10,000


def usage(meter: str, seq: int, current: bool) -> dict[str, object]:
    start = T0 + STEP * (seq - 1)
    record: dict[str, object] = {"meter": meter, "seq": seq, "start": start.isoformat(),
              "end": (start + STEP).isoformat(), "import_start": 1000 + 100 * (seq - 1),
              "import_end": 1000 + 100 * seq}  # fmt: skip
    if current:
        record["current_mean_a"] = 1.733
    return record


def batch(
    meters: list[tuple[str, str]], first_seq: int, now: datetime, current: bool = False
) -> list[Inbound]:
    """Backlog shape: ``PER_METER`` one-record messages of every meter, in seq order."""
    items = []
    for seq in range(first_seq, first_seq + PER_METER):
        for meter, gateway in meters:
            payload = json.dumps({"v": 1, "records": [usage(meter, seq, current)]}).encode()
            items.append(Inbound(topic(gateway, "usage"), payload, now))
    return items


def fleet_round(
    by_gateway: dict[str, list[str]], seq: int, now: datetime, per_batch: int, current: bool
) -> Iterator[list[Inbound]]:
    """Fleet shape: one report (a record of each of its meters) of every gateway, as batches of
    ``per_batch`` messages."""
    items = []
    for gateway, meters in by_gateway.items():
        records = [usage(m, seq, current) for m in meters]
        payload = json.dumps({"v": 1, "records": records}).encode()
        items.append(Inbound(topic(gateway, "usage"), payload, now))
        if len(items) == per_batch:
            yield items
            items = []
    if items:
        yield items


def bless(engine: Engine, reports: Iterable[CreditReport]) -> None:
    """Queue the reported meters' credit states, as the ingest coordinator queues them: the
    meters' chains are blessed."""
    with write_tx(engine) as conn:
        enqueue_many(conn, [(i.gateway_id, credit_command_for(to_meter_credit(i)))
                            for i in reports if isinstance(i, CreditInfo)])  # fmt: skip


@contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    with postgres() as (_, url):
        yield url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--shape", choices=["backlog", "fleet"], default="backlog")
    parser.add_argument("--batches", type=int, default=0, help="counted batches (backlog: 8, "
                        "after 2) or rounds of every gateway (fleet: 3, after 1)")  # fmt: skip
    parser.add_argument("--messages", type=int, default=70, help="fleet: messages a batch")
    parser.add_argument("--current", action="store_true", help="records carry current_mean_a")
    args = parser.parse_args()
    fleet = args.shape == "fleet"
    counted = args.batches or (3 if fleet else 8)
    with database(args.db) as url:
        migrate(url)
        engine = make_engine(url)
        if fleet:
            world = seed_world(engine, gateways=1000, meters_per_gateway=10)
        else:
            world = seed_world(engine, gateways=20, meters_per_gateway=50)
        processor = BatchProcessor(engine)
        meters = sorted(world.meters.items())
        by_gateway: dict[str, list[str]] = {}
        for meter, gateway in meters:
            by_gateway.setdefault(gateway, []).append(meter)
        now = datetime.now(UTC)
        cpu, records, batches, derived = 0.0, 0, 0, 0
        for n in range(counted + (1 if fleet else 2)):
            if fleet:
                work = list(fleet_round(by_gateway, n + 1, now, args.messages, args.current))
            else:
                work = [batch(meters, n * PER_METER + 1, now, args.current)]
            for items in work:
                size = sum(len(json.loads(i.payload)["records"]) for i in items)
                before = time.process_time()
                outcome = processor.process(items, now)
                spent = time.process_time() - before
                if outcome.counts["posted"] != size:
                    raise SystemExit(f"round {n}: {dict(outcome.counts)}")
                if n >= (1 if fleet else 2):
                    cpu, records, batches = cpu + spent, records + size, batches + 1
                    derived += sum(not isinstance(r, CreditInfo) for r in outcome.credit.values())
                elif fleet:
                    bless(engine, outcome.credit.values())
        engine.dispose()
    print(f"settling ({args.db}, {args.shape}): {cpu / records * 1e6:.1f} us CPU per record "
          f"({records} records in {batches} batches; {derived} credit reports left to the "
          f"agents)")  # fmt: skip


if __name__ == "__main__":
    main()
