"""The hub's Prometheus metrics, kept by ``prometheus-client``.

``Metrics`` (one per hub app, ``HubContext.metrics``) has its own registry, since tests run
several hubs in one process: the process's CPU, memory, file descriptors and start time, Python's
GC and platform info; the API's counters ``smsa_api_<name>_total`` (``inc``) and gauges
``smsa_<name>`` (``set_gauge``); ``smsa_http_request_duration_seconds`` per method, route
template and status (``HttpMetrics``); ``smsa_command_round_trip_seconds``.
``IngestMetrics`` (one per ``IngestService``) has the settling histograms. ``hub.api.scrape``
puts both together with what is counted in the database at scrape time.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# ``*_created`` series double every counter and histogram for a timestamp nobody here graphs.
disable_created_metrics()

_NAME = re.compile(r"[^a-zA-Z0-9_]")
SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
MESSAGES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
UNMATCHED = "unmatched"  # the route label of a request no route took (404)


def metric_name(name: str) -> str:
    clean = _NAME.sub("_", name)
    return clean if clean.startswith("smsa_") else f"smsa_{clean}"


def _histogram(
    registry: CollectorRegistry,
    name: str,
    doc: str,
    buckets: Iterable[float],
    labels: Iterable[str] = (),
) -> Histogram:
    return Histogram(name, doc, labelnames=tuple(labels), buckets=tuple(buckets), registry=registry)


class Metrics:
    """The hub process's registry: process metrics, the API's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.http = _histogram(
            self.registry,
            "smsa_http_request_duration_seconds",
            "HTTP requests, received to response sent, by method, route template and status",
            SECONDS,
            ("method", "route", "status"),
        )
        self.command_round_trip = _histogram(
            self.registry,
            "smsa_command_round_trip_seconds",
            "a command's creation in the command table to its agent's command_ack being stored",
            SECONDS,
        )
        # The newest applied command observed into command_round_trip (``hub.api.scrape``).
        self.round_trips_since = datetime.now(UTC)
        self.round_trips_lock = threading.Lock()
        self._lock = threading.Lock()
        self._counters: dict[str, Counter] = {}
        self._gauges: dict[str, Gauge] = {}

    def inc(self, name: str, by: int = 1) -> None:
        """Add ``by`` to the counter ``smsa_api_<name>_total``."""
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                full = metric_name(f"api_{name}")
                counter = Counter(full, name.replace("_", " "), registry=self.registry)
                self._counters[name] = counter
        counter.inc(by)

    def set_gauge(self, name: str, value: float) -> None:
        """Set the gauge ``smsa_<name>``."""
        with self._lock:
            gauge = self._gauges.get(name)
            if gauge is None:
                gauge = Gauge(metric_name(name), name.replace("_", " "), registry=self.registry)
                self._gauges[name] = gauge
        gauge.set(value)

    def value(self, name: str) -> float | None:
        """A sample's current value by its full name (``smsa_ledger_ok``), None when absent."""
        return self.registry.get_sample_value(name)


class IngestMetrics:
    """The ingest service's settling, one observation per batch a settler committed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = _histogram(
            self.registry,
            "smsa_ingest_latency_seconds",
            "the hub's MQTT client receiving a batch's oldest message to the hub learning the "
            "batch is committed",
            SECONDS,
        )
        self.batch_size = _histogram(
            self.registry, "smsa_ingest_batch_messages", "MQTT messages per settled batch", MESSAGES
        )
        self.settle = _histogram(
            self.registry,
            "smsa_settle_seconds",
            "one batch's settling by a settler: rating, posting and commit",
            SECONDS,
        )

    def batch(self, messages: int, settle_s: float, received_at: float, now: float) -> None:
        """A committed batch of ``messages`` (0: held records released, nothing received), its
        settling time, and when its oldest message was received (``time.time()``)."""
        self.settle.observe(settle_s)
        if messages:
            self.batch_size.observe(messages)
            self.latency.observe(max(0.0, now - received_at))


class HttpMetrics:
    """ASGI middleware observing each HTTP request's duration under its route's template, never
    its raw path (whose ids would make a series per meter)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.histogram = metrics.http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = "500"

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.histogram.labels(scope["method"], route_template(scope), status).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The template of the route that took the request (``/api/v1/meters/{meter_id}``), or
    ``unmatched``. The router leaves the route it chose in the scope; an included router's route
    knows only its own part of the path, so the (static) prefix it was included under is the
    part of the raw path before the suffix its pattern matches."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    pattern = getattr(route, "path_regex", None)
    if not isinstance(template, str) or not isinstance(pattern, re.Pattern):
        return UNMATCHED
    path: str = scope["path"]
    for cut, char in enumerate(path):
        if char == "/" and pattern.match(path[cut:]):
            return path[:cut] + template
    return template
