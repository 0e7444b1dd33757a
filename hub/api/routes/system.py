"""GET /healthz (no auth) and GET /metrics (Prometheus text, no auth), at the root and under
/api/v1."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import func, select, text
from starlette.concurrency import run_in_threadpool

from hub.api.context import HubContext
from hub.api.deps import ContextDep
from hub.api.jsonbody import HubRoute
from hub.db import session_scope
from hub.metrics import render
from hub.models import Event, JournalEntry, Meter, PostedUsage, Quarantine, table

log = logging.getLogger(__name__)
router = APIRouter(tags=["system"], route_class=HubRoute)

entries = table(JournalEntry)
meters = table(Meter)
posted = table(PostedUsage)
events = table(Event)
quarantine = table(Quarantine)
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


def metrics_text(ctx: HubContext) -> str:
    counters, gauges, sums = ctx.metrics.snapshot()
    all_counters: dict[str, float] = {f"api_{k}": v for k, v in counters.items()}
    all_gauges: dict[str, float] = dict(gauges)
    all_gauges.update(_db_gauges(ctx))
    all_gauges.update(_command_latency(ctx))
    ing_counters, ing_gauges = _ingest_values(ctx)
    all_counters.update(ing_counters)
    all_gauges.update(ing_gauges)
    return render(all_counters, all_gauges, sums, HELP)


def health(ctx: HubContext) -> dict[str, Any]:
    try:
        with session_scope(ctx.engine, write=False) as session:
            session.connection().execute(text("SELECT 1"))
        db_ok = True
    except Exception as exc:  # any failure means "not healthy", reported, not raised
        log.warning("health check: database: %s", exc)
        db_ok = False
    mqtt: bool | None = None
    if ctx.ingest is not None:
        mqtt = ctx.ingest.connected
    return {"ok": db_ok, "db": db_ok, "mqtt": mqtt}


@router.get("/healthz")
async def healthz(ctx: ContextDep) -> JSONResponse:
    body = await run_in_threadpool(health, ctx)
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(ctx: ContextDep) -> PlainTextResponse:
    body = await run_in_threadpool(metrics_text, ctx)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")
