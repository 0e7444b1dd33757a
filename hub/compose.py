"""The hub's composition root: every long-lived service built once, wired by constructor.

``compose`` builds, over one engine and one ``HubSettings``: the counters (``Metrics``), the
notification channels (the log, and the webhook when configured), the command path (the
dispatcher and the pump outlet it publishes through) and the ingest service when MQTT is
wanted, the ONE credit control that ingest, top-ups, operator actions and the scheduler's tick
share, and the scheduler's jobs. ``HubServices.start`` / ``stop`` run them (the app's lifespan
calls them); ``hub.app.build_app`` puts the HTTP API in front. Nothing here imports
``hub.api``: the API depends on the services, never the other way round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from hub.control.engine import CreditControl
from hub.control.webhook import Channels, WebhookNotifier
from hub.ingest.outlet import CommandPath
from hub.ingest.service import IngestService
from hub.metrics import Metrics
from hub.services import jobs
from hub.services.leader import JobsLeader
from hub.services.runtime import Runtime
from hub.settings import HubSettings

log = logging.getLogger(__name__)

INGEST_CONNECT_WAIT_S = 10.0  # longest start-up waits for the ingest subscription


@dataclass(frozen=True)
class IngestOptions:
    """What the ingest service takes beyond the settings (``serve`` uses the defaults)."""

    client_id: str = "smsa-hub"
    credit_interval_s: float = 5.0


class HubServices:
    """The services ``compose`` built, and their start and stop in order."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        ingest: IngestService | None,
        webhook: WebhookNotifier | None,
        scheduler: bool,
    ) -> None:
        self.runtime = runtime
        self.ingest = ingest
        self.webhook = webhook
        self.scheduler = scheduler
        self._jobs: BackgroundScheduler | None = None
        # PostgreSQL: several processes may serve one database; the jobs run in the one that
        # holds the jobs lock (hub.services.leader).
        self._leader: JobsLeader | None = None

    def start(self) -> None:
        """The webhook's sender, ingest (ready once subscribed: a gateway's records sent before
        the hub's first-ever subscription would be dropped by the broker, which has no session
        to queue them in), then the scheduler's jobs."""
        if self.webhook is not None:
            self.webhook.start()
        if self.ingest is not None:
            self.ingest.start()
            if not self.ingest.wait_connected(INGEST_CONNECT_WAIT_S):
                log.warning("ingest: not connected to the broker yet; the API starts anyway")
        if not self.scheduler:
            return
        if self.runtime.engine.url.get_backend_name() == "postgresql":
            self._leader = JobsLeader(self.runtime.engine, self._start_jobs, self._stop_jobs)
            self._leader.open()
        else:
            self._start_jobs()

    def _start_jobs(self) -> None:
        self._jobs = jobs.start_scheduler(self.runtime)
        self.runtime.metrics.set_gauge("jobs_leader", 1)

    def _stop_jobs(self) -> None:
        if self._jobs is not None:
            jobs.stop_scheduler(self.runtime, self._jobs)
            self._jobs = None
        self.runtime.metrics.set_gauge("jobs_leader", 0)

    def stop(self) -> None:
        """In the reverse order of ``start``."""
        if self._leader is not None:
            self._leader.close()
            self._leader = None
        self._stop_jobs()
        if self.ingest is not None:
            self.ingest.stop()
        if self.webhook is not None:
            self.webhook.stop()


def compose(
    settings: HubSettings,
    engine: Engine,
    *,
    ingest: IngestOptions | None = None,
    scheduler: bool = False,
) -> HubServices:
    """Every service of a hub on ``engine`` (schema already migrated). ``ingest``: run MQTT
    ingest and the command dispatcher on ``settings.mqtt`` (None: the API alone; commands stay
    ``queued`` in the table). ``scheduler``: run the background jobs."""
    ttl = timedelta(seconds=settings.command_ttl_s)
    webhook = (
        WebhookNotifier(settings.webhook_url, settings.webhook_secret)
        if settings.webhook_url
        else None
    )
    notifier = Channels(webhook) if webhook is not None else Channels()
    commands = CommandPath.build(engine) if ingest is not None else None
    wake = commands.dispatcher.wake if commands is not None else None
    control = CreditControl(engine, wake=wake, notifier=notifier, ttl=ttl)
    service = None
    if ingest is not None:
        service = IngestService(
            engine,
            settings.mqtt,
            client_id=ingest.client_id,
            batch_size=settings.ingest_batch_size,
            currency=settings.currency,
            workers=settings.ingest_workers,
            credit_interval_s=ingest.credit_interval_s,
            command_ttl_s=settings.command_ttl_s,
            credit_refresh_s=settings.credit_refresh_s,
            commands=commands,
            control=control,
            ca_file=settings.mqtt_ca_file or None,
            group=settings.ingest_group or None,
        )
    runtime = Runtime(settings=settings, engine=engine, metrics=Metrics(), control=control)
    return HubServices(runtime, ingest=service, webhook=webhook, scheduler=scheduler)
