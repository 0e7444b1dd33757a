"""After a top-up commits: tell the account's meters their credit state, reconnect if due.

Uses the running IngestService (``ctx.ingest``: the process's one MQTT client). Without it
(API-only use, tests without a broker) there is nobody to tell and this does nothing.
A meter is sent ``reconnect`` when its relay is known to be off and the paying balance is now
above its rules' ``reconnect_above`` (the hysteresis threshold of ``CreditRules``).
A failure here is logged and counted, never raised: the money is already posted, and the
next credit-state publication corrects the gateway.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select

from hub.api.context import HubContext
from hub.control.credit_state import credit_state
from hub.db import read_tx
from hub.ingest.service import meters_paid_by
from hub.ledger._sql import meters
from hub.models import Relay

log = logging.getLogger(__name__)


def reconnect_due(engine: Engine, account_id: str) -> list[str]:
    """Meters paid by ``account_id`` whose relay is off and whose balance is back above the
    reconnect threshold."""
    due = []
    paid = meters_paid_by(engine, account_id)
    with read_tx(engine) as conn:
        for meter_id in paid:
            relay = conn.execute(select(meters.c.relay).where(meters.c.id == meter_id)).scalar()
            if relay != Relay.OFF.value:
                continue
            try:
                credit = credit_state(conn, meter_id)
            except LookupError as exc:
                log.warning("no credit state for %s: %s", meter_id, exc)
                continue
            if credit.state.balance > credit.state.rules.reconnect_above:
                due.append(meter_id)
    return due


def after_topup(ctx: HubContext, account_id: str) -> None:
    ingest = ctx.ingest
    if ingest is None:
        log.debug("no MQTT: credit state of %s not published", account_id)
        return
    try:
        sent = ingest.publish_account_credit_state(account_id)
        ctx.metrics.inc("credit_states_sent", sent)
        for meter_id in reconnect_due(ctx.engine, account_id):
            command_id = ingest.send_command(meter_id, "reconnect", reason="top-up")
            ctx.metrics.inc("reconnects_sent")
            log.info("top-up of %s: reconnect %s sent to %s", account_id, command_id, meter_id)
    except Exception:  # never undo or fail a committed top-up over a notification
        ctx.metrics.inc("notify_errors")
        log.exception("top-up of %s: telling its meters failed", account_id)
