"""The operator dashboard in a real headless chromium (Debian's chromium + chromedriver):
sign in with an operator key, see meters, balances and provider totals, and watch a meter's
relay go from on to off live when its gateway reports it; screenshot to test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.hub.api.stack import Stack, running_hub
from tests.hub.web.webdriver import available, chromium
from tests.support import wait_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"

pytestmark = pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium and chromedriver")


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Broker) -> Iterator[Stack]:
    with running_hub(tmp_path, mosquitto) as running:
        yield running


def relay(stack: Stack, meter: str) -> str:
    r = stack.http.get(f"/api/v1/meters/{meter}", headers=stack.keys.h("operator"))
    return str(r.json()["relay"])


def test_dashboard_shows_a_meter_cut_off_live(stack: Stack) -> None:
    h = stack.keys.h("admin")
    r = stack.http.post("/api/v1/accounts/c1/topups", json={"amount": "4.20", "reference": "cash"},
                        headers={**h, "Idempotency-Key": "dash-1"})  # fmt: skip
    assert r.status_code == 201
    stack.gw.status("online")
    for meter in ("m1", "m2"):
        stack.gw.report("relay_on", meter, "supply on")
    wait_for(lambda: relay(stack, "m1") == "on" and relay(stack, "m2") == "on")
    wait_for(lambda: all(m["online"] for m in stack.http.get("/api/v1/meters", headers=h).json()))

    with chromium() as browser:
        browser.get(stack.url + "/")
        # A customer key is refused with a message; the login form stays.
        browser.type("#key", stack.keys.customer)
        browser.click("#login-form button")
        browser.wait_text("#login-error", "403")
        # The operator signs in.
        browser.type("#key", stack.keys.operator)
        browser.click("#login-form button")
        browser.wait_text("#meters tbody", "m2")
        browser.wait_text("#stat-stream", "live")
        assert browser.text("tr[data-meter='m1'] .relay") == "on"
        assert "4.20" in browser.text("tr[data-meter='m1']")
        assert "Generator" in browser.text("#providers")
        assert browser.text("#stat-ledger") == "balanced"
        assert browser.js("return sessionStorage.getItem('smsa.key')") == stack.keys.operator

        # Credit runs out at the gateway: it opens the relay and reports it.
        stack.gw.report("relay_off", "m1", "credit exhausted")
        browser.wait_text("tr[data-meter='m1'] .relay", "off")
        browser.wait_text("#feed", "credit exhausted")
        assert browser.text("tr[data-meter='m2'] .relay") == "on"
        assert browser.text("#stat-off") == "1"
        assert browser.text("#stat-online") == "2"
        browser.screenshot(ARTIFACTS / "dashboard.png")
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
