"""The customer page in a real headless chromium against a live hub: a customer signs in with
its key, sees its balance, its bill (with the PDF fetched through its key), the usage chart,
its daily load shape, the comparison and its offers (insights), and tops up. Another
customer's id with this key is refused. Screenshot to test-artifacts/customer.png."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from hub.settings import HubSettings
from tests.hub.api.conftest import (  # noqa: F401 (the API's fixtures)
    Keys,
    api_engine,
    app,
    client,
    keys,
    live_server,
    migrated_sqlite,
)
from tests.hub.billing.ledgerdata import post_usage
from tests.hub.web.webdriver import available, chromium
from tests.support import wait_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
pytestmark = pytest.mark.skipif(not available(), reason="needs /usr/bin/chromium and chromedriver")


@pytest.fixture
def api_settings(tmp_path: Path, migrated_sqlite: Path) -> HubSettings:  # noqa: F811
    """The API's settings with customer top-ups on."""
    shutil.copyfile(migrated_sqlite, tmp_path / "hub.db")
    return HubSettings(db=f"sqlite:///{tmp_path / 'hub.db'}", mqtt="", currency="USD",
                       scheduler=False, customer_topups=True)  # fmt: skip


def test_customer_page(client: httpx.Client, keys: Keys, api_engine: Engine) -> None:  # noqa: F811
    post_usage(api_engine, ("m1", "c1"), 1, datetime(2026, 11, 5, tzinfo=UTC), 20_000,
               rates={"gen": 10, "ret": 5}, tariff="t1")  # fmt: skip
    r = client.post("/api/v1/billing/runs", json={"period": "2026-11"}, headers=keys.h("admin"))
    assert r.status_code == 201, r.text
    with chromium() as browser:
        browser.get(str(client.base_url) + "/customer")
        browser.type("#customer", "c2")
        browser.type("#key", keys.customer)
        browser.click("#login-form button")
        browser.wait_text("#login-error", "403")
        browser.js("document.querySelector('#customer').value = ''")
        browser.type("#customer", "c1")
        browser.type("#key", keys.customer)
        browser.click("#login-form button")
        browser.wait_text("#balance", "-3.00 USD")
        browser.wait_text("#bills tbody", "SMSA-2026-")
        assert "3.00" in browser.text("#bills tbody") and "statement" in browser.text("#bills")
        wait_for(lambda: browser.js("return document.querySelector('#chart svg') !== null"),
                 timeout=15, interval=0.1)  # fmt: skip
        wait_for(lambda: browser.js("return document.querySelector('#load-shape svg') !== null"),
                 timeout=15, interval=0.1)  # fmt: skip
        browser.wait_text("#comparison", "similar homes")
        assert browser.text("#offers") == "No offers."
        browser.click("#bills tbody button")
        wait_for(lambda: browser.js("const a = document.querySelector('#bills a.pdf'); "
                                    "return a ? a.href.startsWith('blob:') : false"),
                 timeout=30, interval=0.2)  # fmt: skip
        browser.type("#topup-amount", "5.00")
        browser.click("#topup-form button")
        browser.wait_text("#balance", "2.00 USD")
        browser.screenshot(ARTIFACTS / "customer.png")
    assert (ARTIFACTS / "customer.png").stat().st_size > 10_000
