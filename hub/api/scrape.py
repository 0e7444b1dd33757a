"""What ``GET /metrics`` serves: the hub's registries (``hub.metrics``) and what is counted at
scrape time, in the Prometheus text format (``prometheus-client``).

At scrape time: gauges counted in the database (records, quarantine, postings, feed events,
meters), the operator command latency over the last 100 commands, the IngestService's counters
(``smsa_ingest_<name>_total``) and queue depth; and the commands applied since the last scrape
go into ``smsa_command_round_trip_seconds``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from hub.api.context import HubContext
from hub.db import session_scope
from hub.ledger.sql import entries, meters, posted
from hub.metrics import Metrics, metric_name
from hub.models import Command, CommandStatus, Event, Quarantine, table

events = table(Event)
quarantine = table(Quarantine)
commands = table(Command)
ROUND_TRIPS_PER_SCRAPE = 10_000

FEED_KINDS = ("disconnect", "reconnect", "low_credit", "tamper")
LATENCY_WINDOW = 100

HELP = {
    "records_ingested": "usage records posted to the ledger (database count)",
    "records_quarantined": "messages quarantined with a reason (database count)",
    "postings": "journal entries (database count)",
    "disconnects": "disconnect events (database count)",
    "reconnects": "reconnect events (database count)",
    "meters_online": "meters currently online",
    "meters_relay_off": "meters whose relay is open",
    "operator_command_latency_seconds_median": "operator command sent to agent ack, median "
    "of the last 100",
    "operator_command_latency_seconds_max": "operator command sent to agent ack, maximum "
    "of the last 100",
}


def _db_gauges(ctx: HubContext) -> dict[str, int]:
    with session_scope(ctx.engine, write=False) as session:
        conn = session.connection()

        def count(table: Any, *where: Any) -> int:
            return int(
                conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()
            )

        kinds: dict[str, int] = {
            str(kind): int(n)
            for kind, n in conn.execute(
                select(events.c.kind, func.count())
                .where(events.c.kind.in_(FEED_KINDS))
                .group_by(events.c.kind)
            )
        }
        return {
            "records_ingested": count(posted),
            "records_quarantined": count(quarantine),
            "postings": count(entries),
            "disconnects": kinds.get("disconnect", 0),
            "reconnects": kinds.get("reconnect", 0),
            "low_credit_events": kinds.get("low_credit", 0),
            "tamper_events": kinds.get("tamper", 0),
            "meters": count(meters),
            "meters_online": count(meters, meters.c.online.is_(True)),
            "meters_relay_off": count(meters, meters.c.relay == "off"),
        }


def _command_latency(ctx: HubContext) -> dict[str, float]:
    """Median and maximum seconds from an operator command being sent to the agent's
    ``command_ack`` (same ``command`` id), over the last ``LATENCY_WINDOW`` operator commands.
    The ack time is the agent's clock, so skew between gateway and hub shows up here."""
    with session_scope(ctx.engine, write=False) as session:
        conn = session.connection()
        sent = conn.execute(
            select(events.c.at, events.c.data)
            .where(events.c.kind.in_(("disconnect", "reconnect")))
            .order_by(events.c.id.desc())
            .limit(LATENCY_WINDOW * 4)
        ).all()
        acks = conn.execute(
            select(events.c.at, events.c.data)
            .where(events.c.kind == "command_ack")
            .order_by(events.c.id.desc())
            .limit(LATENCY_WINDOW * 20)
        ).all()
    acked = {str((d or {}).get("command")): at for at, d in acks if (d or {}).get("command")}
    matched = [
        max(0.0, (acked[cid] - at).total_seconds())
        for at, d in sent
        if (d or {}).get("by") == "operator" and (cid := str(d.get("command_id"))) in acked
    ]
    latencies = sorted(matched[:LATENCY_WINDOW])
    if not latencies:
        return {}
    return {
        "operator_command_latency_seconds_median": latencies[len(latencies) // 2],
        "operator_command_latency_seconds_max": latencies[-1],
        "operator_commands_acknowledged": float(len(latencies)),
    }


def _ingest_values(ctx: HubContext) -> tuple[dict[str, float], dict[str, float]]:
    """Counters and gauges of the IngestService, when one runs (names prefixed ``ingest_``)."""
    counters: dict[str, float] = {}
    gauges: dict[str, float] = {}
    ingest = ctx.ingest
    if ingest is None:
        return counters, gauges
    for name, value in ingest.counters.items():
        counters[f"ingest_{name}"] = value
    gauges["ingest_queue_depth"] = ingest.queue_depth
    return counters, gauges


class ScrapeTime(Collector):
    """The values counted when scraped, under the names the hub has always exported."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        gauges: dict[str, float] = {}
        gauges.update(_db_gauges(self.ctx))
        gauges.update(_command_latency(self.ctx))
        counters, ingest_gauges = _ingest_values(self.ctx)
        gauges.update(ingest_gauges)
        for raw, value in sorted(gauges.items()):
            yield GaugeMetricFamily(metric_name(raw), HELP.get(raw, raw.replace("_", " ")), value)
        for raw, value in sorted(counters.items()):
            yield CounterMetricFamily(metric_name(raw), raw.replace("_", " "), value)


def observe_round_trips(conn: Connection, metrics: Metrics) -> None:
    """Each command applied since the last scrape: its creation to its ack being stored."""
    with metrics.round_trips_lock:
        rows = conn.execute(
            select(commands.c.created_at, commands.c.done_at)
            .where(
                commands.c.status == CommandStatus.APPLIED,
                commands.c.done_at > metrics.round_trips_since,
            )
            .order_by(commands.c.done_at)
            .limit(ROUND_TRIPS_PER_SCRAPE)
        ).all()
        for created_at, done_at in rows:
            metrics.command_round_trip.observe(max(0.0, (done_at - created_at).total_seconds()))
        if rows:
            metrics.round_trips_since = rows[-1].done_at


def exposition(ctx: HubContext) -> tuple[bytes, str]:
    """The body and media type of ``GET /metrics``."""
    with session_scope(ctx.engine, write=False) as session:
        observe_round_trips(session.connection(), ctx.metrics)
    registry = CollectorRegistry()
    registry.register(cast(Collector, ctx.metrics.registry))
    ingest_metrics = getattr(ctx.ingest, "metrics", None)
    if ingest_metrics is not None:
        registry.register(cast(Collector, ingest_metrics.registry))
    registry.register(ScrapeTime(ctx))
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
