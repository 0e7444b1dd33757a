"""The feed of ``bypass_suspected`` in the hub: usage records carrying the agent's mean current
(``current_mean_a``) are settled by the ingest batch into ``posted_usage`` (SQLite and
PostgreSQL), read back by ``hub.insights.reads`` as ``Samples`` (interval end, current, the
register at the end) and raised once by the insights run, with its evidence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from hub.db import read_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.insights import reads
from hub.insights.service import InsightsSettings, refresh
from protocol.topics import topic
from tests.hub.ingest.helpers import table, usage
from tests.hub.seed import seed_world

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=6)
STEP = timedelta(minutes=15)


def stream(meter: str, plan: list[tuple[int, float | None]]) -> list[dict[str, Any]]:
    """Consecutive 15-minute records of ``meter``: (energy, mean current or None) each."""
    out, register = [], 1000
    for i, (energy, amps) in enumerate(plan):
        record: dict[str, Any] = {
            "meter": meter, "seq": i + 1, "start": (T0 + i * STEP).isoformat(),
            "end": (T0 + (i + 1) * STEP).isoformat(), "import_start": register,
            "import_end": register + energy,
        }  # fmt: skip
        if amps is not None:
            record["current_mean_a"] = amps
        out.append(record)
        register += energy
    return out


def settle(engine: Engine, gateway: str, records: list[dict[str, Any]]) -> None:
    inbound = Inbound(topic(gateway, "usage"), usage(records), datetime.now(UTC))
    assert BatchProcessor(engine).process([inbound]).counts["posted"] == len(records)


def test_a_register_standing_still_under_current_is_raised_once(engine: Engine) -> None:
    world = seed_world(engine, gateways=1, meters_per_gateway=2)
    (frozen, gateway), (clean, _) = sorted(world.meters.items())
    # 2 h drawing 9.15 A, then the register stops for 2 h while the current keeps flowing;
    # an older agent's records (no current) in between change nothing
    settle(engine, gateway, stream(frozen, [(480, 9.15)] * 8 + [(0, 9.15)] * 8 + [(0, None)] * 2))
    settle(engine, gateway, stream(clean, [(480, 9.15)] * 16 + [(0, 0.0)] * 2))
    with read_tx(engine) as conn:
        p = table("posted_usage")
        stored = conn.execute(select(p.c.current_mean_a).where(p.c.meter_id == frozen)).scalars()
        assert sorted(stored, key=lambda v: (v is None, v)) == [9.15] * 16 + [None] * 2

    now = T0 + 18 * STEP + timedelta(minutes=1)
    settings = InsightsSettings()
    since, history = now - timedelta(days=90), now - timedelta(days=400)
    with read_tx(engine) as conn:
        data = reads.read_customer(
            conn, world.customers[frozen], since=since, now=now, history=history
        )
    (meter,) = data.meters
    assert len(meter.samples.at) == 16  # the records with a current
    assert int(meter.samples.register[-1]) == 1000 + 8 * 480

    result, _ = refresh(engine, world.customers[frozen], now, settings)
    (found,) = [a for a in result.anomalies if a.kind == "bypass_suspected"]
    assert found.meter == frozen and found.severity == "high"
    assert found.evidence == {
        "from": (T0 + 8 * STEP).isoformat(),  # the last record that advanced ends here
        "to": (T0 + 16 * STEP).isoformat(),
        "mean_current_a": 9.15,
        "register": 1000 + 8 * 480,
    }
    refresh(engine, world.customers[frozen], now, settings)  # raised once, not again
    events = table("events")
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(events.c.meter_id, events.c.data).where(events.c.kind == "anomaly")
        ).all()
    assert [(m, d["anomaly"], d["severity"], d["register"]) for m, d in rows] == [
        (frozen, "bypass_suspected", "high", 1000 + 8 * 480)
    ]

    clean_result, _ = refresh(engine, world.customers[clean], now, settings)
    assert clean_result.anomalies == []
