"""Scheduled jobs (APScheduler 3.x BackgroundScheduler). Jobs are module-level functions that
take ids (the database URL), never live objects, so they can be listed, persisted and
re-run; ``register`` maps the URL to the running hub's ``Runtime``."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.util import undefined

from hub.billing.announce import announce
from hub.billing.jobs import billing_job, subscriptions_job
from hub.billing.settings import BillingSettings
from hub.db import session_scope
from hub.ledger import check_invariants
from hub.rating.standing import standing_charges_job
from hub.services.runtime import Runtime

log = logging.getLogger(__name__)

_runtimes: dict[str, Runtime] = {}
_lock = threading.Lock()

LEDGER_CHECK_S = 300
CREDIT_TICK_S = 60
# Yesterday's standing charges are accrued at start and every hour after (idempotent per meter
# and day), so a hub that was down at midnight catches up when it comes back the same day.
STANDING_S = 3600
# The month just ended is billed by the first run after it ends (hourly; a billed month is
# found billed and left as it is).
BILLING_S = 3600


def register(rt: Runtime) -> None:
    with _lock:
        _runtimes[rt.settings.db] = rt


def unregister(rt: Runtime) -> None:
    with _lock:
        if _runtimes.get(rt.settings.db) is rt:
            del _runtimes[rt.settings.db]


def _runtime(db_url: str) -> Runtime | None:
    with _lock:
        return _runtimes.get(db_url)


def check_ledger(db_url: str) -> bool | None:
    """Compute every ledger invariant; log an ERROR and set the ``ledger_ok`` gauge on failure."""
    rt = _runtime(db_url)
    if rt is None:
        return None
    with session_scope(rt.engine, write=False) as session:
        report: dict[str, Any] = check_invariants(session)
    ok = bool(report.get("ok"))
    rt.metrics.set_gauge("ledger_ok", int(ok))
    if not ok:
        bad = [name for name, c in report.get("checks", {}).items() if not c.get("ok")]
        log.error("ledger invariants violated: %s", ", ".join(bad))
    return ok


def credit_tick(db_url: str) -> int | None:
    """Credit control for every meter below zero: grace periods and friendly windows end
    without any posting to trigger them. Returns how many actions it took."""
    rt = _runtime(db_url)
    if rt is None:
        return None
    actions = rt.control.tick()
    for action in actions:
        rt.metrics.inc(f"control_{action.kind}")
    return len(actions)


def billing(db_url: str) -> int:
    """Bill the month just ended (``hub.billing.jobs.billing_job``) and announce its new bills
    on the running hub's channels; returns how many bills were made."""
    result = billing_job(db_url)
    rt = _runtime(db_url)
    if rt is not None and result.created:
        announce(rt.engine, result.events, rt.control.notifier.notify, BillingSettings())
    return len(result.bills) if result.created else 0


def start_scheduler(rt: Runtime) -> BackgroundScheduler:
    register(rt)
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True})
    jobs = (
        (check_ledger, LEDGER_CHECK_S, undefined),  # APScheduler: first run after one interval
        (credit_tick, CREDIT_TICK_S, undefined),
        (standing_charges_job, STANDING_S, datetime.now(UTC)),  # and at start
        (billing, BILLING_S, undefined),
        (subscriptions_job, BILLING_S, datetime.now(UTC)),  # and at start
    )
    for job, seconds, first in jobs:
        scheduler.add_job(job, "interval", seconds=seconds, args=[rt.settings.db],
                          id=job.__name__, max_instances=1, next_run_time=first)  # fmt: skip
    scheduler.start()
    return scheduler


def stop_scheduler(rt: Runtime, scheduler: BackgroundScheduler) -> None:
    scheduler.shutdown(wait=True)
    unregister(rt)
