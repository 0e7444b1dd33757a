"""The agent's Prometheus metrics (``prometheus-client``), served only when ``[metrics] port``
is set, on ``[metrics] host`` (127.0.0.1 unless said otherwise).

One agent runs per process, so its metrics live in prometheus-client's default registry, beside
the process's CPU, memory and file descriptors and Python's GC that the library registers there
itself: ``smsa_agent_poll_seconds{bus}``, the duration of each meter's poll (with its retries),
observed by the bus poller; and, at scrape time, what the status file the engine writes every
``status.interval_s`` says (read from the file, so a scrape never touches the engine's state or
its SQLite connection from the HTTP thread).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, Histogram, disable_created_metrics, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.status import StatusUnavailable, read

log = logging.getLogger(__name__)

# ``*_created`` series double every counter and histogram for a timestamp nobody here graphs.
disable_created_metrics()

POLL_SECONDS = Histogram(
    "smsa_agent_poll_seconds",
    "one meter's Modbus poll, its retries included",
    ["bus"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

TOTALS = {
    "records": "usage intervals closed and stored in the outbox",
    "events": "events stored in the outbox",
    "commands": "signed commands applied",
    "rejected": "commands refused",
}


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


class StatusCollector(Collector):
    """The running agent's status file as metrics (none while there is no file yet)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[Metric]:
        try:
            status = read(self.path)
        except StatusUnavailable:
            return
        yield from _families(status)


def _families(status: dict[str, Any]) -> Iterator[Metric]:
    at = datetime.fromisoformat(status["at"]).timestamp()
    yield _gauge("smsa_agent_status_age_seconds", "age of the status these come from",
                 max(0.0, time.time() - at))  # fmt: skip
    connected = float(bool(status.get("uplink", {}).get("connected")))
    yield _gauge("smsa_agent_uplink_connected", "1 while connected to the broker", connected)
    yield _gauge("smsa_agent_outbox_depth", "records and events not yet sent",
                 status.get("outbox_depth", 0))  # fmt: skip
    yield _gauge("smsa_agent_outbox_unconfirmed", "sent, not yet confirmed by a hub receipt",
                 status.get("outbox_unconfirmed", 0))  # fmt: skip
    stats = status.get("stats", {})
    for name, doc in TOTALS.items():
        yield CounterMetricFamily(f"smsa_agent_{name}", doc, value=stats.get(name, 0))

    buses = status.get("buses", {})
    cycles = CounterMetricFamily("smsa_agent_bus_cycles", "poll cycles", labels=["bus"])
    reconnects = CounterMetricFamily("smsa_agent_bus_reconnects", "reconnections",
                                     labels=["bus"])  # fmt: skip
    bus_up = GaugeMetricFamily("smsa_agent_bus_connected", "1 while connected", labels=["bus"])
    for name, bus in sorted(buses.items()):
        cycles.add_metric([name], bus.get("cycles", 0))
        reconnects.add_metric([name], bus.get("reconnects", 0))
        bus_up.add_metric([name], float(bool(bus.get("connected"))))
    yield from (cycles, reconnects, bus_up)

    meters = status.get("meters", {})
    ok = GaugeMetricFamily("smsa_agent_meter_ok", "1 while the meter answers its polls",
                           labels=["meter"])  # fmt: skip
    relay = GaugeMetricFamily("smsa_agent_meter_relay_on", "1 relay closed, 0 open (unknown: "
                              "no sample)", labels=["meter"])  # fmt: skip
    energy = GaugeMetricFamily("smsa_agent_meter_import_wh", "the energy register, Wh",
                               labels=["meter"])  # fmt: skip
    counters: dict[str, CounterMetricFamily] = {}
    for name, meter in sorted(meters.items()):
        ok.add_metric([name], float(meter.get("state") == "ok"))
        if meter.get("relay") in ("on", "off"):
            relay.add_metric([name], float(meter["relay"] == "on"))
        if meter.get("import_wh") is not None:
            energy.add_metric([name], meter["import_wh"])
        for counter, value in sorted(meter.get("counters", {}).items()):
            family = counters.setdefault(counter, CounterMetricFamily(
                f"smsa_agent_meter_{counter}", f"Modbus {counter.replace('_', ' ')}",
                labels=["meter"]))  # fmt: skip
            family.add_metric([name], value)
    yield from (ok, relay, energy, *counters.values())


class MetricsServer:
    """``GET /metrics`` on ``host:port`` in a daemon thread, until :meth:`stop`."""

    def __init__(self, host: str, port: int, status_path: Path) -> None:
        self.collector = StatusCollector(status_path)
        REGISTRY.register(self.collector)
        try:
            self.server: WSGIServer = start_http_server(port, addr=host)[0]
        except OSError:
            REGISTRY.unregister(self.collector)
            raise
        log.info("metrics on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        REGISTRY.unregister(self.collector)
