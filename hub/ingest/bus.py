"""Each meter's bus health, as its gateway's online status reports it (issue 15, item 7).

An online status carries ``meters.<id>.bus`` (``protocol.messages.BusHealth``: the agent's
Modbus counters and the meter's poll state). The hub keeps the newest report per meter in
``meter_bus`` for the operator (``GET /meters/{id}`` and the meter page). A gateway reports only
its own meters: an entry for a meter of another gateway, an unknown meter, or one that does
not validate is left out, and the rest of the status still counts.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.engine import Connection

from hub.ledger.sql import upsert
from hub.models import MeterBus, table
from protocol.messages import BusHealth, Status

log = logging.getLogger(__name__)
T_BUS = table(MeterBus)
FIELDS = tuple(BusHealth.model_fields)


def bus_reports(
    gateway: str, status: Status, owned: Collection[str], at: datetime
) -> list[dict[str, Any]]:
    """The ``meter_bus`` rows a status reports for the meters the gateway owns."""
    if status.state != "online":
        return []
    meters = (status.model_extra or {}).get("meters")
    if not isinstance(meters, dict):
        return []
    rows = []
    for meter_id, report in sorted(meters.items()):
        if meter_id not in owned or not isinstance(report, dict) or "bus" not in report:
            continue
        try:
            health = BusHealth.model_validate(report["bus"])
        except ValidationError as exc:
            log.warning("gateway %s: bus health of %s refused: %s", gateway, meter_id,
                        exc.errors()[0]["msg"])  # fmt: skip
            continue
        rows.append({"meter_id": meter_id, "reported_at": at, **health.model_dump()})
    return rows


def store_bus(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(upsert(conn, T_BUS, ["meter_id"], ["reported_at", *FIELDS]), rows)


def read_bus(conn: Connection, meter_id: str) -> dict[str, Any] | None:
    """The newest bus report of a meter, or None if its gateway has not sent one."""
    row = conn.execute(T_BUS.select().where(T_BUS.c.meter_id == meter_id)).mappings().first()
    return None if row is None else dict(row)
