"""The operator dashboard at fleet size, in a real headless chromium: 10,000 meters, searched
and paged fifty at a time; a chart of disconnections and top-ups per day; a meter's own page
with its consumption chart, events, bus health and commands. Screenshots to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hub.web.fleet import DISCONNECTED, fleet_hub, meter_id
from tests.hub.web.webdriver import available, chromium
from tests.support import wait_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
SIZE = 10_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium and chromedriver"),
]


def test_ten_thousand_meters_are_searched_and_paged(tmp_path: Path) -> None:
    with fleet_hub(tmp_path, SIZE) as fleet, chromium() as browser:
        browser.get(fleet.url + "/")
        browser.type("#key", fleet.keys.operator)
        browser.click("#login-form button")
        browser.wait_text("#page-info", "1–50 of 10,002")  # and the world's m1, m2
        assert browser.js("return document.querySelectorAll('#meters tbody tr').length") == 50
        assert browser.text("#stat-meters") == "10,002"
        assert browser.text("#stat-off") == str(SIZE // DISCONNECTED)
        # the day chart drew: uPlot's canvas and both series in its legend
        browser.wait_text("#daily-chart", "Disconnections")
        assert browser.js("return !!document.querySelector('#daily-chart canvas')")
        assert "Top-ups" in browser.text("#daily-chart")

        browser.click("#page-next")
        browser.wait_text("#page-info", "51–100 of 10,002")
        browser.type("#meter-search", "FM-0990")
        browser.wait_text("#page-info", "1–10 of 10")
        assert browser.text("#meters tbody").count("fm-0990") == 10
        browser.screenshot(ARTIFACTS / "fleet.png")

        target = meter_id(9900)  # a multiple of DISCONNECTED: cut off a day ago
        browser.js("document.querySelector(arguments[0]).click()",
                   f"tr[data-meter='{target}'] a")  # fmt: skip
        browser.wait_text("#mp-title", f"Meter {target}")
        browser.wait_text("#mp-events", "credit exhausted")
        assert browser.js("return !document.querySelector('#meter-page').hidden")
        assert browser.js("return !!document.querySelector('#mp-chart canvas')")
        assert "off" in browser.text("#mp-facts")
        browser.wait_text("#mp-bus", "no answer")  # its gateway's bus report
        assert "25 (5.0 %)" in browser.text("#mp-bus") and "failing" in browser.text("#mp-bus")
        assert "None." in browser.text("#mp-mismatches")
        browser.screenshot(ARTIFACTS / "meter.png")

        browser.click("#back")
        wait_for(lambda: browser.js("return document.querySelector('#meter-page').hidden"))
        assert not browser.js("return document.querySelector('#fleet').hidden")
