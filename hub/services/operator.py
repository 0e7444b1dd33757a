"""Operator disconnect / reconnect through credit control (``CreditControl.operator``).

Credit control signs the command, records the audit event (kind = the action, the operator's
reason, ``data`` = {by: "operator", key_id, command_id, status}), teaches the rules' memory
(a manual cut-off is never undone automatically) and queues the command in the command table,
from which the dispatcher publishes it when MQTT is configured (status ``queued`` until then).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hub.keys import Principal
from hub.services.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorCommand:
    """An operator's command as queued: its id, meter, action and status."""

    command_id: str
    meter_id: str
    action: str
    status: str


def operator_command(
    rt: Runtime, who: Principal, meter_id: str, action: str, reason: str
) -> OperatorCommand:
    command_id, status, _event_id = rt.control.operator(
        meter_id, action, reason, by={"key_id": who.key_id}
    )
    rt.metrics.inc(f"operator_{action}s")
    log.info("operator key %d: %s %s (%s): %s", who.key_id, action, meter_id, status, reason)
    return OperatorCommand(command_id, meter_id, action, status)
