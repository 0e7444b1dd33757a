"""Operator disconnect / reconnect: sent to the gateway signed, and audited as an event.

The audit event has the action as its kind (``disconnect`` / ``reconnect``), the operator's
reason, and ``data`` = {by: "operator", key_id, command_id, status}. With MQTT (``serve``) the
command goes out through the ingest service's client (status ``sent``; paho queues it while
the broker is away); without MQTT it is only recorded, with status ``pending``.
"""

from __future__ import annotations

import logging
import uuid

from sqlmodel import Session

from hub.api.context import HubContext
from hub.api.schemas import CommandOut
from hub.db import run_tx, session_scope
from hub.errors import NotFoundError
from hub.events import record_event
from hub.keys import Principal
from hub.models import Meter

log = logging.getLogger(__name__)


def operator_command(
    ctx: HubContext, who: Principal, meter_id: str, action: str, reason: str
) -> CommandOut:
    with session_scope(ctx.engine, write=False) as session:
        if session.get(Meter, meter_id) is None:
            raise NotFoundError("meter", meter_id)
    if ctx.ingest is None:
        command_id, status = f"pending-{uuid.uuid4().hex}", "pending"
    else:
        command_id = ctx.ingest.send_command(meter_id, action, reason=f"operator: {reason}")
        status = "sent"

    def audit(session: Session) -> None:
        data = {"by": "operator", "key_id": who.key_id, "command_id": command_id, "status": status}
        record_event(session, action, meter_id=meter_id, reason=reason, data=data)

    run_tx(ctx.engine, audit)
    ctx.metrics.inc(f"operator_{action}s")
    log.info("operator key %d: %s %s (%s): %s", who.key_id, action, meter_id, status, reason)
    return CommandOut(command_id=command_id, meter=meter_id, action=action, status=status)
