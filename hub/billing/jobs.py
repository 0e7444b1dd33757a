"""The scheduler's billing entry point (module level, taking ids like every job)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlmodel import Session

from hub.audit import job_audit
from hub.billing.periods import Period
from hub.billing.run import RunResult, run_billing
from hub.billing.settings import BillingSettings
from hub.billing.subscriptions import post_due
from hub.db import make_engine, run_tx

log = logging.getLogger(__name__)


def subscriptions_job(db_url: str, now: str | None = None) -> int:
    """Post every subscription's charge up to the month of ``now`` (ISO instant; default the
    present): each month is posted once, in advance; returns how many entries were new."""
    moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
    settings = BillingSettings()
    engine = make_engine(db_url)
    try:
        until = Period.of(moment, settings.zone)

        def work(session: Session) -> int:
            posted = post_due(session.connection(), until, settings.zone)
            job_audit(session.connection(), "subscriptions", posted, {"until": str(until)})
            return posted

        return run_tx(engine, work)
    finally:
        engine.dispose()


def billing_job(db_url: str, now: str | None = None) -> RunResult:
    """Bill the month before ``now`` (ISO instant; default the present) once it has ended:
    the first run after the month ends bills it, later ones find it billed."""
    moment = datetime.fromisoformat(now) if now else datetime.now(UTC)
    settings = BillingSettings()
    period = Period.of(moment, settings.zone).previous()
    engine = make_engine(db_url)
    try:
        return run_tx(engine, lambda s: run_billing(s.connection(), period, settings, moment))
    finally:
        engine.dispose()
