"""Billing throughput (issue 17): a month's billing run for N customers with two services each
(electricity and water, two providers on electricity, one on water) on a SQLite file, and PDF
rendering apart. Prints a table and writes ``bench/results/billing.json``.

Goal: the run for 10,000 customers in under a minute of CPU (PDF rendering excluded)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert
from sqlmodel import Session
from weasyprint import HTML

from hub import ledger
from hub.billing.periods import Period
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.billing.views import bill_page
from hub.db import make_engine, migrate, read_tx, run_tx
from hub.ledger import UsagePosting, provider_account_id
from hub.ledger.sql import accounts, customers, meters
from hub.models import AccountKind, Gateway, Tariff, TariffVersion, Tier
from protocol.tariff import Tariff as TariffDoc

RESULTS = Path(__file__).resolve().parent / "results" / "billing.json"
PERIOD = Period(2027, 1)
GOAL_CPU_S = 60.0
ELECTRICITY = {"id": "elec", "currency": "USD", "components": [
    {"provider": "gen", "per_kwh": "0.12"}, {"provider": "grid", "per_kwh": "0.05"}]}  # fmt: skip
WATER = {"id": "water", "currency": "USD", "components": [{"provider": "waterco",
                                                           "per_m3": "1.35"}]}  # fmt: skip
RATES = {"elec": {"gen": 12, "grid": 5}, "water": {"waterco": 135}}  # minor units per kWh / m3


def seed(engine: Engine, n: int, records: int) -> int:
    """Providers, tariffs, one gateway, ``n`` customers with an electricity and a water meter,
    and ``records`` usage records per meter in the month; returns the postings made."""

    def world(session: Session) -> None:
        for provider, tier in (("gen", Tier.GENERATION), ("grid", Tier.DISTRIBUTION),
                               ("waterco", Tier.DISTRIBUTION)):  # fmt: skip
            ledger.create_provider(session, provider, provider, tier, "USD")
        for doc in (ELECTRICITY, WATER):
            tariff = TariffDoc.model_validate(doc)
            session.add(Tariff(id=tariff.id, currency="USD", name=tariff.id))
            session.flush()
            session.add(TariffVersion(tariff_id=tariff.id, version=1,
                                      valid_from=datetime(2000, 1, 1, tzinfo=UTC),
                                      document=tariff.model_dump_json()))  # fmt: skip
        session.add(Gateway(id="gw", command_key="00" * 32, mqtt_username="gw",
                            mqtt_password_hash="-"))  # fmt: skip
        session.flush()
        conn = session.connection()
        now = datetime.now(UTC)
        ids = [f"c{i:05d}" for i in range(n)]
        conn.execute(insert(accounts), [
            {"id": c, "name": c, "kind": AccountKind.CUSTOMER.value, "currency": "USD",
             "balance": 0, "floor": 0, "owner_id": c, "created_at": now}
            for c in ids])  # fmt: skip
        conn.execute(insert(customers), [
            {"id": c, "name": c, "protected": False, "flags": {}, "created_at": now}
            for c in ids])  # fmt: skip
        conn.execute(insert(meters), [
            {"id": f"{kind}-{c}", "gateway_id": "gw", "customer_id": c, "tariff_id": tariff,
             "service": service, "timezone": "UTC", "relay": "unknown", "online": False,
             "created_at": now}
            for c in ids for kind, tariff, service in (("e", "elec", "electricity"),
                                                       ("w", "water", "water"))])  # fmt: skip

    run_tx(engine, world)
    start = PERIOD.start(UTC)
    step = (PERIOD.end(UTC) - start) / records
    batch: list[UsagePosting] = []
    made = 0
    for i in range(n):
        c = f"c{i:05d}"
        for kind, tariff in (("e", "elec"), ("w", "water")):
            for r in range(records):
                amount = 1500 + (i * 7 + r * 13) % 900  # Wh or litres
                shares = {p: rate * amount // 1000 for p, rate in RATES[tariff].items()}
                lines = [(c, -sum(shares.values()))] + [
                    (provider_account_id(p), v) for p, v in shares.items() if v
                ]
                end = start + step * (r + 1)
                batch.append(UsagePosting(
                    meter_id=f"{kind}-{c}", seq=r + 1, import_start=r * 3000,
                    import_end=r * 3000 + amount, lines=lines, currency="USD",
                    interval_start=end - timedelta(hours=1), interval_end=end,
                    metadata={"tariff": tariff, "version": 1, "energy": amount}))  # fmt: skip
        if len(batch) >= 10_000 or i == n - 1:
            postings = list(batch)
            run_tx(engine, lambda s, p=postings: ledger.post_usage_batch(s, p))  # type: ignore[misc]
            made += len(batch)
            batch.clear()
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.billing", description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--records", type=int, default=4, help="usage records per meter")
    parser.add_argument("--pdfs", type=int, default=20, help="bills rendered as PDF")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smsa-bench-billing-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'hub.db'}"
        migrate(url)
        engine = make_engine(url)
        try:
            t0 = time.perf_counter()
            postings = seed(engine, args.customers, args.records)
            seeded_s = time.perf_counter() - t0
            settings = BillingSettings(timezone="UTC")
            now = PERIOD.end(UTC) + timedelta(hours=1)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            result = run_tx(engine, lambda s: run_billing(s.connection(), PERIOD, settings, now))
            run_wall, run_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            bills = len(result.bills)
            pages = 0
            wall0 = time.perf_counter()
            with read_tx(engine) as conn:
                for bill_id in result.bills[: args.pdfs]:
                    document = HTML(string=bill_page(conn, bill_id)).render()
                    document.write_pdf()  # what hub.billing.render.bill_pdf does
                    pages += len(document.pages)
            pdf_s = time.perf_counter() - wall0
        finally:
            engine.dispose()
    data: dict[str, Any] = {
        "customers": args.customers, "services_per_customer": 2,
        "records_per_meter": args.records, "postings": postings, "seed_s": round(seeded_s, 1),
        "bills": bills, "run_wall_s": round(run_wall, 2), "run_cpu_s": round(run_cpu, 2),
        "bills_per_s": round(bills / run_wall, 1), "goal_cpu_s": GOAL_CPU_S,
        "met": run_cpu <= GOAL_CPU_S * args.customers / 10_000,
        "pdf_bills": min(args.pdfs, bills), "pdf_pages": pages, "pdf_s": round(pdf_s, 2),
        "pdf_pages_per_s": round(pages / pdf_s, 2) if pdf_s else 0.0,
    }  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"{'figure':<48} {'value':>10}")
    for label, key in (
        ("bills", "bills"),
        ("billing run, wall (s)", "run_wall_s"),
        ("billing run, CPU (s)", "run_cpu_s"),
        ("bills/s", "bills_per_s"),
        ("PDF pages rendered", "pdf_pages"),
        ("PDF pages/s", "pdf_pages_per_s"),
    ):
        print(f"{label:<48} {data[key]:>10}")  # fmt: skip
    print(f"written {RESULTS}")
    return 0 if data["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
