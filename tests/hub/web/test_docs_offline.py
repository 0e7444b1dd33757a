"""Swagger UI (/docs) and ReDoc (/redoc) render from the hub's own files in a headless chromium
that cannot reach anything but 127.0.0.1: no CDN. Screenshots to test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Broker
from tests.hub.api.stack import running_hub
from tests.hub.web.webdriver import Browser, available, chromium
from tests.support import wait_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"


def loaded_from_elsewhere(browser: Browser, origin: str) -> list[str]:
    names = browser.js("return performance.getEntriesByType('resource').map(e => e.name)")
    return [name for name in names if not name.startswith(origin)]


@pytest.mark.slow
@pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium and chromedriver")
def test_docs_render_with_the_network_blocked(tmp_path: Path, mosquitto: Broker) -> None:
    with running_hub(tmp_path, mosquitto) as hub, chromium(offline=True) as browser:
        browser.get(hub.url + "/docs")
        browser.wait_text(".swagger-ui .info .title", "SMSA hub")
        wait_for(lambda: browser.js("return document.querySelectorAll('.opblock').length") > 20)
        assert browser.text(".swagger-ui .opblock-tag-section") is not None
        assert loaded_from_elsewhere(browser, hub.url) == []
        browser.screenshot(ARTIFACTS / "docs-swagger-ui.png")
        # The block holds: a CDN is out of reach from this browser.
        reached = browser.js_async(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0]).then(() => done(true), () => done(false));",
            CDN,
        )
        assert reached is False

        browser.get(hub.url + "/redoc")
        browser.wait_text(".api-info h1", "SMSA hub")
        browser.wait_text(".api-content", "/api/v1/meters")
        assert loaded_from_elsewhere(browser, hub.url) == []
        browser.screenshot(ARTIFACTS / "docs-redoc.png")
