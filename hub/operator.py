"""Operator disconnect / reconnect: audited as an event, then sent to the gateway signed.

The audit event has the action as its kind (``disconnect`` / ``reconnect``), the operator's
reason, and ``data`` = {by: "operator", key_id, command_id, status}. Without MQTT the command
is recorded with status ``pending`` and nothing is sent.
"""

from __future__ import annotations

import logging
import uuid

from sqlmodel import Session

from hub.api.context import HubContext
from hub.api.schemas import CommandOut
from hub.db import run_tx
from hub.errors import NotFoundError
from hub.events import record_event
from hub.keys import Principal
from hub.models import Meter

log = logging.getLogger(__name__)


def operator_command(
    ctx: HubContext, who: Principal, meter_id: str, action: str, reason: str
) -> CommandOut:
    command_id = f"op-{uuid.uuid4().hex}"
    status = "pending" if ctx.ingest is None else "sent"

    def work(session: Session) -> None:
        if session.get(Meter, meter_id) is None:
            raise NotFoundError("meter", meter_id)
        data = {"by": "operator", "key_id": who.key_id, "command_id": command_id, "status": status}
        record_event(session, action, meter_id=meter_id, reason=reason, data=data)

    run_tx(ctx.engine, work)
    ctx.metrics.inc(f"operator_{action}s")
    return CommandOut(command_id=command_id, meter=meter_id, action=action, status=status)
