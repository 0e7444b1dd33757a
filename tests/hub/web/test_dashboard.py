"""The operator dashboard in a real headless chromium (Debian's chromium + chromedriver),
with the whole chain running: simulated meters, the real agent, Mosquitto, the hub.

An operator signs in (a customer key is refused), sees the meters come online and the
balance fall as usage is settled, and watches meter m1 go off live when its credit runs out
(the agent cuts it and reports it; the SSE feed brings it to the page). Screenshot to
test-artifacts/dashboard.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.helpers import Proc, agent_config, meters, start_agent, start_sim, tcp_bus
from tests.conftest import Broker
from tests.hub.api.stack import running_hub
from tests.hub.web.webdriver import available, chromium
from tests.support import free_port, stop, wait_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium and chromedriver"),
]


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        stop(p.proc)


def test_dashboard_shows_a_meter_cut_off_live(
    tmp_path: Path, mosquitto: Broker, procs: list[Proc]
) -> None:
    with running_hub(tmp_path, mosquitto) as hub, chromium() as browser:
        admin = hub.keys.h("admin")
        # m1's customer has 0.10 (about 0.67 kWh at 0.15/kWh), m2's plenty.
        for account, amount in (("c1", "0.10"), ("c2", "400.00")):
            r = hub.http.post(f"/api/v1/accounts/{account}/topups",
                              json={"amount": amount, "reference": "cash"},
                              headers={**admin, "Idempotency-Key": f"dash-{account}"})  # fmt: skip
            assert r.status_code == 201

        browser.get(hub.url + "/")
        browser.type("#key", hub.keys.customer)
        browser.click("#login-form button")
        browser.wait_text("#login-error", "403")
        browser.type("#key", hub.keys.operator)
        browser.click("#login-form button")
        browser.wait_text("#meters tbody", "m2")
        browser.wait_text("#stat-stream", "live")
        assert "0.10" in browser.text("tr[data-meter='m1']")
        assert browser.text("#stat-ledger") == "balanced"
        browser.wait_text("#anomalies", "No anomalies.")
        assert browser.js("return sessionStorage.getItem('smsa.key')") == hub.keys.operator

        # An operator reconnect for m2 before its gateway ever connected: the meter shows that
        # its last command is not applied yet, until the agent applies it (below).
        r = hub.http.post("/api/v1/meters/m2/reconnect", json={"reason": "dashboard check"},
                          headers=admin)  # fmt: skip
        assert r.status_code == 202
        browser.js("refresh()")
        browser.wait_text("tr[data-meter='m2'] .relay", "command", timeout=15)

        # The meters start: two 2 kW loads, 240 simulated seconds per second.
        sim_port = free_port()
        procs.append(start_sim(["--tcp", f"127.0.0.1:{sim_port}", "--speed", "240",
                                "--meter", "1:2000", "--meter", "2:2000"],
                               tmp_path / "sim.log"))  # fmt: skip
        config = agent_config(tmp_path, mosquitto.port, tcp_bus(sim_port), meters([1, 2]),
                              gateway="gw1", key=hub.command_key, report=0.5)  # fmt: skip
        agent = start_agent(config, tmp_path / "agent.log")
        procs.append(agent)
        browser.wait_text("#stat-online", "2", timeout=30)
        browser.wait_text("tr[data-meter='m1'] .relay", "off", timeout=60)
        browser.wait_text("#feed", "credit exhausted")
        assert browser.text("tr[data-meter='m2'] .relay") != "off"

        def applied() -> bool:
            browser.js("refresh()")
            return "command" not in browser.text("tr[data-meter='m2'] .relay")

        wait_for(applied, timeout=30, interval=0.5)
        assert "Generator" in browser.text("#providers")
        assert browser.text("#providers-total") != "0.00"
        browser.screenshot(ARTIFACTS / "dashboard.png")
        assert "Traceback" not in agent.text()
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
