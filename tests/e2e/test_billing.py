"""Multi-tier billing end to end (issue 17): a month for three customers. Each has electricity
through ``smsa-agent`` reading the Modbus TCP simulator (five tiers: generation, transmission,
distribution, retail, platform) and water through a distributor's readings imports; one also
has an internet subscription. ``smsa-hub serve`` settles it all on a SQLite file; the month is
then billed. Every bill's lines sum to its charges, the charges equal what the ledger posted to
the customer, and every tier line equals that provider's postings for the customer."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import and_, select

from demo.procs import Processes
from demo.story import Member
from hub.billing.periods import Period
from hub.billing.run import run_billing
from hub.billing.settings import BillingSettings
from hub.billing.store import bill_lines, bills
from hub.db import make_engine, run_tx
from hub.ledger.sql import entries, lines, meters, providers
from tests.conftest import Broker
from tests.e2e.conftest import minor, start_system
from tests.support import wait_for

pytestmark = pytest.mark.slow

CUSTOMERS = ("ana", "ben", "cai")
CHARGES = ("usage", "standing", "subscription")


def members() -> list[Member]:
    return [Member(c, c.title(), f"e-{c}", n, 900 + 300 * n, "", "")
            for n, c in enumerate(CUSTOMERS, start=1)]  # fmt: skip


def ledger_truth(conn: Any, customer: str, end: datetime) -> tuple[int, dict[tuple[str, str], int]]:
    """The customer's charges before ``end`` and each (service, provider)'s credits in them,
    straight from the journal (every meter here has one payer)."""
    charge_entries = (
        select(entries.c.id, entries.c.meter_id, entries.c.metadata)
        .join(lines, lines.c.entry_id == entries.c.id)
        .where(
            and_(
                lines.c.account_id == customer,
                entries.c.kind.in_(CHARGES),
                entries.c.effective_at < end,
            )
        )
    )
    service_of = dict(conn.execute(select(meters.c.id, meters.c.service)).all())
    provider_of = dict(conn.execute(select(providers.c.account_id, providers.c.id)).all())
    charges = 0
    tiers: dict[tuple[str, str], int] = defaultdict(int)
    for entry_id, meter_id, meta in conn.execute(charge_entries).all():
        service = service_of[meter_id] if meter_id else meta["service"]
        for account, amount in conn.execute(select(lines.c.account_id, lines.c.amount)
                                            .where(lines.c.entry_id == entry_id)):  # fmt: skip
            if account == customer:
                charges -= amount
            else:
                tiers[(service, provider_of[account])] += amount
    return charges, dict(tiers)


def test_a_month_for_three_customers(
    processes: Processes, tmp_path: Path, mosquitto: Broker
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    system = start_system(processes, work, mosquitto.url, members(), speed=1200,
                          topups={c: "100.00" for c in CUSTOMERS})  # fmt: skip
    api = system.api
    try:
        api.post("/providers", {"id": "waterco", "name": "Water Co", "tier": "distribution"})
        api.post("/providers", {"id": "isp", "name": "Fibre ISP", "tier": "retail"})
        api.post(
            "/tariffs",
            {
                "id": "water",
                "currency": "USD",
                "components": [{"provider": "waterco", "per_m3": "1.35"}],
            },
        )
        api.post("/gateways", {"id": "gw-feed"})
        for c in CUSTOMERS:
            api.post("/meters", {"id": f"w-{c}", "gateway": "gw-feed", "customer": c,
                                 "tariff": "water", "service": "water"})  # fmt: skip
        api.post("/subscriptions", {"id": "net-cai", "customer": "cai", "provider": "isp",
                                    "service": "internet", "per_month": "30.00",
                                    "start": "2026-12-01"})  # fmt: skip
        now = datetime.now(UTC)
        december = Period(2026, 12) if now < datetime(2027, 1, 1, tzinfo=UTC) else \
            Period.of(now, BillingSettings().zone)  # fmt: skip
        start = december.start(UTC)
        step = (now - start) / 4  # three readings between the month's start and now
        feed = [{"meter": f"w-{c}", "at": (start + k * step).isoformat(),
                 "import": 10_000 + n * 1000 + k * (150 + 40 * n)}
                for n, c in enumerate(CUSTOMERS) for k in (1, 2, 3)]  # fmt: skip
        report = api.post("/imports/readings", {"rows": feed})
        assert report["accepted"] == 9 and report["rejected"] == [], report
        for m in system.members:  # a few records of electricity per meter
            wait_for(lambda m=m: (api.get(f"/meters/{m.meter}")["last_seq"] or 0) >= 4,
                     timeout=30)  # fmt: skip
        processes.stop("agent")

        engine = make_engine(f"sqlite:///{work / 'hub.db'}")
        try:
            end = december.end(UTC)

            def bill_and_read(session: Any) -> tuple[Any, dict[str, Any]]:
                result = run_billing(session.connection(), december,
                                     BillingSettings(timezone="UTC"), end)  # fmt: skip
                conn = session.connection()
                return result, {c: ledger_truth(conn, c, end) for c in CUSTOMERS}

            result, truth = run_tx(engine, bill_and_read)
            with engine.connect() as conn:
                for c in CUSTOMERS:
                    bill = conn.execute(select(bills).where(bills.c.customer_id == c)).one()
                    rows = conn.execute(
                        select(bill_lines).where(
                            and_(bill_lines.c.bill_id == bill.id, bill_lines.c.kind != "payment")
                        )
                    ).all()
                    charges, tiers = truth[c]
                    assert sum(r.amount for r in rows) == bill.charges == charges > 0, c
                    billed = {(r.service, r.provider_id): r.amount for r in rows}
                    assert billed == tiers, c
                    services = {s for s, _ in billed}
                    expected = {"electricity", "water"} | ({"internet"} if c == "cai" else set())
                    assert services == expected, c
                    assert {r.tier for r in rows if r.service == "electricity"} == {
                        "generation",
                        "transmission",
                        "distribution",
                        "retail",
                        "platform",
                    }
            assert len(result.bills) == 3
        finally:
            engine.dispose()
        (summary,) = api.get("/customers/cai/bills")
        bill = api.get(f"/bills/{summary['id']}")
        assert minor(bill["charges"]) == sum(minor(x["amount"]) for x in bill["lines"])
        assert api.get("/ledger/check")["ok"] is True
    finally:
        api.close()
