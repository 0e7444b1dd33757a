"""After a top-up commits: credit control (``hub.control.engine.CreditControl.after_topup``).

That is the notifications of the debt recovery posted with the top-up (and the recovery itself
when that was not possible), the floor restored, ``reconnect`` for meters whose balance is
back above their threshold, the new credit state to every meter the account pays for, and,
for an alternate account, draws for its customers below zero. Commands go out through the
ingest service's MQTT client when there is one (recorded as ``pending`` otherwise).
A failure here is logged and counted, never raised: the top-up is already committed, and the
scheduler's credit-control tick and the next credit state correct what was missed.
"""

from __future__ import annotations

import logging

from hub.api.context import HubContext
from hub.control.effects import Plan

log = logging.getLogger(__name__)


def after_topup(
    ctx: HubContext, account_id: str, entry_id: int, recovered: Plan | None = None
) -> None:
    """``recovered``: the plan of the debt recovery committed with the top-up (its events are
    stored; its notifications and commands go out here)."""
    if ctx.control is None:
        return
    try:
        actions = ctx.control.dispatch(recovered) if recovered is not None else []
        actions += ctx.control.after_topup(account_id, entry_id)
    except Exception:  # never fail a committed top-up over what follows it
        ctx.metrics.inc("notify_errors")
        log.exception("top-up of %s (entry %d): credit control failed", account_id, entry_id)
        return
    for action in actions:
        ctx.metrics.inc(f"control_{action.kind}")
