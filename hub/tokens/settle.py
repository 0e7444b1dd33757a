"""A gateway's ``token_redeemed`` event, settled in the transaction that stores it (once: the
event is stored once per id, and the token leaves the clearing account at most once whatever
the events say, ``hub.tokens.store``); the meter's new credit state is queued with it."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from hub.audit import gateway_actor, insert_audit
from hub.commands.store import enqueue
from hub.control.credit_state import credit_command_for, credit_state
from hub.models import Meter, table
from hub.tokens.store import TOKEN_EVENT, settle_reported

log = logging.getLogger(__name__)

_meters = table(Meter)

__all__ = ["TOKEN_EVENT", "settle_token_event"]


def settle_token_event(conn: Connection, meter_id: str, data: Mapping[str, Any]) -> str:
    """Settle the token ``data`` names (``count`` and ``amount``, integers); what happened
    (``hub.tokens.store.settle_reported``, or ``malformed``)."""
    count, amount = data.get("count"), data.get("amount")
    if type(count) is not int or type(amount) is not int:
        log.warning("meter %s: a token_redeemed event without integer count and amount", meter_id)
        return "malformed"
    outcome = settle_reported(conn, meter_id, count, amount)
    if outcome == "settled":
        gateway = conn.execute(
            select(_meters.c.gateway_id).where(_meters.c.id == meter_id)
        ).scalar()
        insert_audit(conn, "token_settled", gateway_actor(str(gateway)),
                     f"token {count} of meter {meter_id} redeemed, {amount} minor units released",
                     {"by": "gateway", "gateway": gateway, "count": count, "amount": amount},
                     meter_id=meter_id)  # fmt: skip
    if outcome in ("settled", "after_cancel"):
        try:
            credit = credit_state(conn, meter_id)
        except LookupError as exc:
            log.warning("no credit state for %s after its token: %s", meter_id, exc)
        else:
            enqueue(conn, credit.gateway_id, credit_command_for(credit, reason="token settled"))
    return outcome
