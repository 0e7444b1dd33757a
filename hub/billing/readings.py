"""Readings imports (contract section 6, ``POST /imports/readings``): a metering company's or
distributor's cumulative register readings become usage records settled by the very ingest
path the agent's records take (``hub.ingest.batch.BatchProcessor``: rating, register rule,
ledger posting, credit control). Nothing is priced here.

A meter's usage has one source. A meter whose gateway never reported usage is fed by imports
(``meter_feeds``): its first reading sets the register (a zero record), and each later reading
above the hub's last one becomes the next usage record from the last reading to it. For a meter
its gateway reports, the agent's records are the usage: a reading inside a posted record's
interval that lies outside that record's register span is recorded as a mismatch
(``reading_mismatches``) and nothing is posted; a reading beyond the gateway's last record is
left to the gateway. A reading at or inside a settled span adds nothing either way."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, insert, select
from sqlalchemy.engine import Connection

from hub.billing.rows import Report, RowError, check_rows, instant, integer, text
from hub.db import read_tx, write_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.ledger.sql import insert_ignore, meters, posted
from hub.models import MeterFeed, ReadingMismatch, table, utcnow
from protocol import topics
from protocol.messages import MAX_REGISTER, MAX_SPAN, UsageMessage, UsageRecord

IMPORT = "import"
_METER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_feeds = table(MeterFeed)
_mismatches = table(ReadingMismatch)


@dataclass(frozen=True)
class Reading:
    meter: str
    at: datetime
    value: int


def check_reading(row: Mapping[str, Any]) -> Reading:
    meter = text(row, "meter", lambda v: bool(_METER.match(v)), "must be a meter id")
    return Reading(meter, instant(row, "at"), integer(row, "import", maximum=MAX_REGISTER))


def import_readings(
    engine: Engine,
    rows: Sequence[Any],
    *,
    currency: str,
    allowed: Callable[[Connection, str], bool] | None = None,
    source: str = "",
) -> dict[str, Any]:
    """Import ``rows`` (see the module docstring); the report of contract section 6.
    ``allowed(conn, meter)``: whether the caller may import for that meter (None: any)."""
    job = _Job(engine, BatchProcessor(engine, currency=currency), allowed, source, Report())
    good = check_rows(rows, check_reading, job.report)
    for n, reading in sorted(good, key=lambda g: (g[1].meter, g[1].at, g[0])):
        try:
            _one(job, reading)
        except RowError as exc:
            job.report.reject(n, exc.field, exc.error)
    job.report.rejected.sort(key=lambda r: r["row"])
    return job.report.as_dict()


@dataclass
class _Job:
    engine: Engine
    processor: BatchProcessor
    allowed: Callable[[Connection, str], bool] | None
    source: str
    report: Report


def _one(job: _Job, reading: Reading) -> None:
    engine, allowed, report = job.engine, job.allowed, job.report
    with read_tx(engine) as conn:
        meter = conn.execute(
            select(meters.c.gateway_id, meters.c.last_seq, meters.c.import_wh)
            .where(meters.c.id == reading.meter)
        ).first()  # fmt: skip
        if meter is None or (allowed is not None and not allowed(conn, reading.meter)):
            raise RowError("meter", f"unknown meter {reading.meter!r}")
        fed = conn.execute(select(_feeds.c.source)
                           .where(_feeds.c.meter_id == reading.meter)).scalar()  # fmt: skip
        newest = conn.execute(
            select(posted.c.interval_end, posted.c.import_end)
            .where(posted.c.meter_id == reading.meter)
            .order_by(posted.c.seq.desc()).limit(1)
        ).first()  # fmt: skip
    if fed is None and meter.last_seq is not None:  # the gateway's records are the usage
        _compare(engine, reading, job.source, report)
        report.accepted += 1
        return
    if newest is not None and reading.at <= newest.interval_end:
        report.accepted += 1  # inside a settled span: adds nothing
        return
    if newest is not None and reading.value < newest.import_end:
        raise RowError("import", f"register went back from {newest.import_end}")
    if newest is not None and reading.at - newest.interval_end > MAX_SPAN:
        raise RowError("at", f"more than {MAX_SPAN.days} days after the meter's last reading")
    start, register = (reading.at, reading.value) if newest is None else (
        newest.interval_end, newest.import_end)  # fmt: skip
    seq = (meter.last_seq or 0) + 1
    record = UsageRecord(meter=reading.meter, seq=seq, start=start, end=reading.at,
                         import_start=register, import_end=reading.value)  # fmt: skip
    with write_tx(engine) as conn:
        conn.execute(insert_ignore(conn, _feeds, ["meter_id"])
                     .values(meter_id=reading.meter, source=IMPORT, since=utcnow()))  # fmt: skip
    payload = UsageMessage(records=(record,)).model_dump_json(exclude_none=True).encode()
    outcome = job.processor.process(
        [Inbound(topics.topic(meter.gateway_id, "usage"), payload, utcnow())]
    )
    if outcome.counts["quarantined"]:
        raise RowError("import", "refused by ingest (see the quarantine and tamper events)")
    report.accepted += 1


def _compare(engine: Engine, reading: Reading, source: str, report: Report) -> None:
    """Record a mismatch if the reading lies outside the register span the gateway reported
    for the interval holding ``reading.at``."""
    with read_tx(engine) as conn:
        span = conn.execute(
            select(posted.c.seq, posted.c.import_start, posted.c.import_end)
            .where(and_(posted.c.meter_id == reading.meter,
                        posted.c.interval_start < reading.at,
                        posted.c.interval_end >= reading.at))
            .order_by(posted.c.seq).limit(1)
        ).first()  # fmt: skip
    if span is None or span.import_start <= reading.value <= span.import_end:
        return
    row = {"meter_id": reading.meter, "at": reading.at, "reading": reading.value,
           "seq": span.seq, "import_start": span.import_start, "import_end": span.import_end,
           "source": source, "recorded_at": utcnow()}  # fmt: skip
    with write_tx(engine) as conn:
        conn.execute(insert(_mismatches).values(row))
    report.mismatches.append({"meter": reading.meter, "at": reading.at.isoformat(),
                              "import": reading.value, "seq": span.seq,
                              "agent": [span.import_start, span.import_end]})  # fmt: skip
