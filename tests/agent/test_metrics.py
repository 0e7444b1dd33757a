"""The agent's opt-in Prometheus endpoint (``[metrics] port``): a real agent polling the simulator
over Modbus TCP and sending through Mosquitto serves its poll histogram, its status as metrics
and the process metrics on 127.0.0.1; it is off without the key; a bad port is a
configuration error."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.settings import load
from tests.agent.helpers import Procs, agent_config, meters, tcp_bus
from tests.conftest import Broker
from tests.support import free_port, wait_for


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    yield started
    started.stop_all()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics`` by name and labels; {} while nothing answers."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.TransportError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def with_metrics(config: Path, port: int) -> Path:
    config.write_text(config.read_text() + f"[metrics]\nport = {port}\n")
    return config


def test_the_agent_serves_its_metrics_on_the_port_it_is_given(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    sim_port = free_port()
    procs.sim(["--tcp", f"127.0.0.1:{sim_port}", "--speed", "240",
               "--meter", "1:2000", "--meter", "2:2000"])  # fmt: skip
    port = free_port()
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(sim_port), meters([1, 2]), report=0.5)
    agent = procs.agent(with_metrics(config, port))

    polls = ("smsa_agent_poll_seconds_count", (("bus", "bus0"),))
    first = wait_for(
        lambda: (s := scrape(port)).get(("smsa_agent_records_total", ()), 0) >= 2 and s,
        timeout=30,
    )
    assert agent.proc.poll() is None, agent.text()
    assert first[polls] >= 2
    assert first[("smsa_agent_uplink_connected", ())] == 1
    assert first[("smsa_agent_meter_ok", (("meter", "m1"),))] == 1
    assert first[("smsa_agent_meter_relay_on", (("meter", "m2"),))] == 1
    assert first[("smsa_agent_meter_polls_total", (("meter", "m1"),))] >= 1
    assert ("process_cpu_seconds_total", ()) in first
    assert ("process_resident_memory_bytes", ()) in first
    # The histogram moves while the agent polls.
    wait_for(lambda: scrape(port).get(polls, 0) > first[polls] + 4, timeout=15)


def test_metrics_are_off_unless_a_port_is_set(tmp_path: Path) -> None:
    config = agent_config(tmp_path, 1883, tcp_bus(5020), meters([1]))
    assert load(config).metrics.port is None
    assert load(with_metrics(config, 9108)).metrics.host == "127.0.0.1"


def test_a_bad_metrics_port_is_a_configuration_error(tmp_path: Path) -> None:
    config = with_metrics(agent_config(tmp_path, 1883, tcp_bus(5020), meters([1])), 0)
    result = subprocess.run([sys.executable, "-m", "agent", "--config", str(config), "check"],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and ": metrics.port:" in result.stderr, result.stderr
