"""Operator disconnect / reconnect through credit control (``CreditControl.operator``).

Credit control signs the command, records the audit event (kind = the action, the operator's
reason, ``data`` = {by: "operator", key_id, command_id, status}), teaches the rules' memory
(a manual cut-off is never undone automatically) and, with MQTT, publishes the command through
the ingest service's client (status ``sent``; ``pending`` without MQTT).
"""

from __future__ import annotations

import logging

from hub.api.context import HubContext
from hub.api.schemas import CommandOut
from hub.keys import Principal

log = logging.getLogger(__name__)


def operator_command(
    ctx: HubContext, who: Principal, meter_id: str, action: str, reason: str
) -> CommandOut:
    assert ctx.control is not None
    command_id, status, _event_id = ctx.control.operator(
        meter_id, action, reason, by={"key_id": who.key_id}
    )
    ctx.metrics.inc(f"operator_{action}s")
    log.info("operator key %d: %s %s (%s): %s", who.key_id, action, meter_id, status, reason)
    return CommandOut(command_id=command_id, meter=meter_id, action=action, status=status)
