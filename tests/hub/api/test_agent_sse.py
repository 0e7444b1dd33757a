"""End to end through the real agent: an operator disconnects a meter over the API, the agent
(on a simulated DDS238 meter) opens the relay, and the agent's own report of the relay reaches
the hub's SSE stream; the relay register reads 0 over Modbus; the disconnect stays one event,
the operator's, joined by the agent's report of applying it. Then a reconnect closes it again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymodbus.client import ModbusTcpClient

from tests.agent.helpers import (
    Proc,
    agent_config,
    meters,
    relay_register,
    start_agent,
    start_sim,
    tcp_bus,
)
from tests.conftest import Broker
from tests.hub.api.stack import running_hub
from tests.support import free_port, stop, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        stop(p.proc)


def relay_reads(it: Iterator[dict[str, Any]], meter: str, state: str) -> dict[str, Any]:
    """The next ``relay`` event the agent reported for ``meter``, the relay reading ``state``."""
    for event in it:
        if (
            event["kind"] == "relay"
            and event["meter"] == meter
            and (event.get("data") or {}).get("state") == state
        ):
            return event
    raise AssertionError("stream ended")


def sse_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield json.loads(line[5:])


def test_agent_relay_event_reaches_the_stream(
    tmp_path: Path, mosquitto: Broker, procs: list[Proc]
) -> None:
    with running_hub(tmp_path, mosquitto) as hub:
        admin = hub.keys.h("admin")
        for account in ("c1", "c2"):
            r = hub.http.post(f"/api/v1/accounts/{account}/topups",
                              json={"amount": "400.00", "reference": "start"},
                              headers={**admin, "Idempotency-Key": f"start-{account}"})  # fmt: skip
            assert r.status_code == 201
        sim_port = free_port()
        procs.append(start_sim(["--tcp", f"127.0.0.1:{sim_port}", "--speed", "60",
                                "--meter", "1:2000", "--meter", "2:2000"],
                               tmp_path / "sim.log"))  # fmt: skip
        config = agent_config(tmp_path, mosquitto.port, tcp_bus(sim_port), meters([1, 2]),
                              gateway="gw1", key=hub.command_key)  # fmt: skip
        agent = start_agent(config, tmp_path / "agent.log")
        procs.append(agent)
        op = hub.keys.h("operator")
        meter = lambda: hub.http.get("/api/v1/meters/m1", headers=op).json()  # noqa: E731
        wait_for(lambda: meter()["online"] and (meter()["last_seq"] or 0) >= 1, timeout=30)

        modbus = ModbusTcpClient("127.0.0.1", port=sim_port, timeout=2)
        assert modbus.connect()
        try:
            assert relay_register(modbus, 1) == 1
            with hub.http.stream("GET", "/api/v1/events/stream", headers=op,
                                 timeout=30) as stream:  # fmt: skip
                events = sse_events(stream)
                r = hub.http.post("/api/v1/meters/m1/disconnect",
                                  json={"reason": "site safety"}, headers=op)  # fmt: skip
                assert r.status_code == 202
                event = relay_reads(events, "m1", "off")
                assert relay_register(modbus, 1) == 0
                wait_for(lambda: meter()["relay"] == "off", timeout=10)
                cut = lambda: hub.http.get("/api/v1/events?kind=disconnect&meter=m1",  # noqa: E731
                                           headers=op).json()  # fmt: skip
                joined = wait_for(lambda: [e for e in cut() if "applied" in e["data"]])
                assert len(cut()) == 1 and joined[0]["data"]["by"] == "operator"
                assert joined[0]["data"]["sources"] == ["gateway", "operator"]
                hub.http.post("/api/v1/meters/m1/reconnect", json={"reason": "safe again"},
                              headers=op)  # fmt: skip
                relay_reads(events, "m1", "on")
            assert relay_register(modbus, 1) == 1
            assert relay_register(modbus, 2) == 1
        finally:
            modbus.close()
        assert event["id"] > 0
        assert agent.proc.poll() is None
        assert "Traceback" not in agent.text()
        metrics = hub.http.get("/metrics").text
        assert "smsa_operator_commands_acknowledged 2.0" in metrics
        assert "smsa_operator_command_latency_seconds_max " in metrics
        check = hub.http.get("/api/v1/ledger/check", headers=op).json()
        assert check["ok"], check
