"""The report of ``smsa-hub insights --period YYYY-MM``: one CSV file per customer, one row per
figure (``section,meter,item,value``), analysed as at the end of the period (or now, for the
current one); offers are recorded and anomalies raised as ``GET .../insights`` does."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from hub.db import read_tx
from hub.errors import InvalidInputError
from hub.insights import reads
from hub.insights.service import Insights, InsightsSettings, refresh
from hub.money import major

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
HEADER = ("section", "meter", "item", "value")


def period_end(period: str, now: datetime) -> datetime:
    """The first instant after ``period`` (UTC), or ``now`` if that is earlier."""
    found = _PERIOD.match(period)
    if found is None:
        raise InvalidInputError("period", "must be YYYY-MM")
    year, month = int(found[1]), int(found[2])
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return min(end, now)


def rows(result: Insights, currency: str) -> Iterator[tuple[str, str, str, Any]]:
    for meter, usage in result.usage.items():
        for item in ("total", "days", "daily_average", "month_on_month", "year_on_year"):
            yield "usage", meter, item, usage[item]
        for name, share in usage["windows"].items():
            yield "usage", meter, f"share_{name}", share
        for hour, value in enumerate(usage["hourly"]):
            yield "usage", meter, f"hour_{hour:02d}", value
        comparison = usage["comparison"] or {}
        for item in ("group", "median", "efficient", "position"):
            if item in comparison:
                yield "comparison", meter, item, comparison[item]
    for a in result.anomalies:
        yield "anomaly", a.meter, a.kind, f"{a.severity}: {a.reason}"
    for o in result.offers:
        saving = f" (saving {major(o.saving, currency)})" if o.saving is not None else ""
        yield "offer", "", o.kind, f"{o.tariff or ''}{saving}: {o.reason}".lstrip(": ")
    if result.withheld:
        yield "offer", "", "withheld", result.withheld
    pay = result.payments
    for item, value in (("days_left", pay.days_left), ("spend_per_day", pay.spend_per_day),
                        ("topups", pay.topups), ("topup_every_days", pay.topup_every_days),
                        ("disconnected_share", pay.disconnected_share),
                        ("late_bills", pay.late_bills), ("risk", pay.risk)):  # fmt: skip
        yield "payments", "", item, value
    for reason in pay.reasons:
        yield "payments", "", "risk_reason", reason


def write_reports(
    engine: Engine, period: str, out: Path, now: datetime, settings: InsightsSettings
) -> list[Path]:
    """One CSV per customer in ``out``: ``<customer>-<period>.csv``."""
    at = period_end(period, now)
    out.mkdir(parents=True, exist_ok=True)
    with read_tx(engine) as conn:
        customers = reads.customer_ids(conn)
    written = []
    for customer in customers:
        result, data = refresh(engine, customer, at, settings)
        path = out / f"{customer}-{period}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(HEADER)
            writer.writerows(rows(result, data.currency))
        written.append(path)
    return written
