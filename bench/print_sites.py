"""Paper routing and print batches (issue 18 item 5; not in ``make bench``, no goal): a billing
run for N customers on paper spread over 10 print sites' areas, against the same run with every
customer on email (the CPU difference is the routing), and one site's day of bills as a batch
PDF (pages per second of wall time, WeasyPrint's first load included). SQLite files; prints
the figures and writes ``bench/results/print_sites.json``."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from hub import ledger
from hub.billing.batches import batch
from hub.billing.periods import Period
from hub.billing.printsites import NewSite, create_site
from hub.billing.profiles import import_profiles
from hub.billing.routing import Zone
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.db import make_engine, migrate, read_tx, run_tx, write_tx
from hub.models import utcnow

RESULTS = Path(__file__).resolve().parent / "results" / "print_sites.json"
SETTINGS = BillingSettings(timezone="UTC", smtp_url="")
AREAS = [f"{a}{d}" for a in "NS" for d in range(1, 6)]  # ten postal areas: N1..N5, S1..S5


def sites(capacity: int) -> list[NewSite]:
    """A site per area, serving its own area cheaply and every other one dearer."""
    return [NewSite(f"site-{area.lower()}", f"Print {area}", 40 + n, "USD", capacity,
                    tuple(Zone(other, 10 if other == area else 60 + m, 5 if other == area else 40)
                          for m, other in enumerate(AREAS)))
            for n, area in enumerate(AREAS)]  # fmt: skip


def seed(engine: Engine, n: int, delivery: str, capacity: int, areas: list[str]) -> None:
    rng = random.Random(7)

    def customers(session: Any) -> None:
        for i in range(n):
            ledger.create_customer(session, f"c{i:06d}", f"Customer {i}", "USD")

    run_tx(engine, customers)
    rows = [{"customer": f"c{i:06d}", "address": f"{i} High Street", "country": "GB",
             "postal_code": f"{rng.choice(areas)} {rng.randint(1, 9)}AB", "delivery": delivery}
            for i in range(n)]  # fmt: skip
    assert import_profiles(engine, rows, source="admin")["accepted"] == n
    with write_tx(engine) as conn:
        for site in sites(capacity):
            create_site(conn, site, utcnow())


def timed_run(engine: Engine) -> tuple[float, float, int, date]:
    """Bill the present month as if it had ended: wall and CPU seconds, bills, the day."""
    period = Period.of(utcnow(), SETTINGS.zone)
    now = period.end(SETTINGS.zone) + timedelta(hours=1)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run_tx(engine, lambda s: run_billing(s.connection(), period, SETTINGS, now))
    return time.perf_counter() - wall0, time.process_time() - cpu0, len(result.bills), now.date()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.print_sites", description=__doc__)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=20, help="bills in the batch PDF")
    args = parser.parse_args(argv)
    data: dict[str, Any] = {"customers": args.customers}
    with tempfile.TemporaryDirectory() as tmp:
        for delivery in ("email", "paper"):
            url = f"sqlite:///{Path(tmp) / f'{delivery}.db'}"
            migrate(url)
            engine = make_engine(url)
            try:
                seed(engine, args.customers, delivery, args.customers, AREAS)
                wall, cpu, bills, _ = timed_run(engine)
                data[delivery] = {"bills": bills, "run_wall_s": round(wall, 3),
                                  "run_cpu_s": round(cpu, 3)}  # fmt: skip
            finally:
                engine.dispose()
        url = f"sqlite:///{Path(tmp) / 'batch.db'}"
        migrate(url)
        engine = make_engine(url)
        try:
            seed(engine, args.batch, "paper", args.batch, ["N1"])
            day = timed_run(engine)[3]
            wall0 = time.perf_counter()
            with read_tx(engine) as conn:
                pdf = batch(conn, "site-n1", day)
            pdf_s = time.perf_counter() - wall0
            path = Path(tmp) / "batch.pdf"
            path.write_bytes(pdf)
            info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True,
                                  text=True, timeout=60).stdout  # fmt: skip
            pages = int(next(line.split()[1] for line in info.splitlines()
                             if line.startswith("Pages:")))  # fmt: skip
        finally:
            engine.dispose()
    routing_cpu_s = data["paper"]["run_cpu_s"] - data["email"]["run_cpu_s"]
    data["routing_cpu_ms_per_bill"] = round(1000 * routing_cpu_s / max(1, args.customers), 3)
    data["batch"] = {"pages": pages, "bytes": len(pdf), "wall_s": round(pdf_s, 3),
                     "pages_per_s": round(pages / pdf_s, 1)}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
