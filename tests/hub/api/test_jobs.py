"""The scheduler's jobs: module-level functions taking the database URL."""

from __future__ import annotations

from sqlalchemy import Engine

from hub.control.engine import CreditControl
from hub.metrics import Metrics
from hub.services import jobs
from hub.services.runtime import Runtime
from hub.settings import HubSettings


def test_check_ledger_job(api_settings: HubSettings, api_engine: Engine) -> None:
    ctx = Runtime(api_settings, api_engine, Metrics(), CreditControl(api_engine))
    assert jobs.check_ledger(api_settings.db) is None  # not registered: nothing to do
    scheduler = jobs.start_scheduler(ctx)
    try:
        scheduled = scheduler.get_jobs()
        names = ["check_ledger", "credit_tick", "standing_charges_job"]
        assert sorted(job.id for job in scheduled) == names
        assert all(job.next_run_time is not None for job in scheduled), "no job is paused"
        assert jobs.credit_tick(api_settings.db) == 0
        assert jobs.check_ledger(api_settings.db) is True
        assert ctx.metrics.value("smsa_ledger_ok") == 1
    finally:
        jobs.stop_scheduler(ctx, scheduler)
    assert jobs.check_ledger(api_settings.db) is None
