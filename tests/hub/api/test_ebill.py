"""Electronic presentment (contract section 6, claims 12-13): a postpaid bill as PDF and HTML
from one template (pdftotext finds the number, the amount due and every tier; page one,
rendered by pdftoppm, is not blank: test-artifacts/bill.png), the bill_issued event, and the
email with the PDF attached received by a real SMTP server (aiosmtpd) started here."""

from __future__ import annotations

import email
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from PIL import Image
from sqlalchemy import Engine

from tests.hub.api.conftest import Keys, new_key
from tests.hub.billing.ledgerdata import post_usage
from tests.support import free_port, wait_for

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"
pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdftoppm") is None,
    reason="needs poppler-utils (pdftotext, pdftoppm)",
)


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inbox]:
    """A real SMTP server on 127.0.0.1 and a free port; the hub's SMSA_HUB_SMTP_URL names it."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("SMSA_HUB_SMTP_URL", f"smtp://127.0.0.1:{port}?from=bills@smsa.test")
    try:
        yield inbox
    finally:
        controller.stop()


def test_postpaid_bill_pdf_html_and_email(
    client: httpx.Client, keys: Keys, api_engine: Engine, smtp: Inbox, tmp_path: Path
) -> None:
    inbox = smtp
    h = keys.h("admin")
    r = client.post("/api/v1/customers", json={"id": "c3", "name": "Cy Postpaid",
                                               "billing": "postpaid"}, headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/meters", json={"id": "m3", "gateway": "gw1", "customer": "c3",
                                            "tariff": "t1"}, headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    profile = {"customer": "c3", "address": "3 Mill Lane", "postal_code": "AB1 2CD",
               "country": "GB", "email": "cy@example.org", "delivery": "both"}  # fmt: skip
    assert client.post("/api/v1/imports/profiles", json={"rows": [profile]},
                       headers=h).json()["accepted"] == 1  # fmt: skip
    post_usage(api_engine, ("m3", "c3"), 1, datetime(2026, 11, 7, tzinfo=UTC), 40_000,
               rates={"gen": 10, "ret": 5}, tariff="t1")  # fmt: skip

    r = client.post("/api/v1/billing/runs", json={"period": "2026-11"}, headers=h)
    assert r.status_code == 201, r.text
    (summary,) = client.get("/api/v1/customers/c3/bills", headers=h).json()
    bill = client.get(f"/api/v1/bills/{summary['id']}", headers=h).json()
    assert bill["status"] == "open" and bill["amount_due"] == "6.00"
    assert bill["reference"].startswith("RF") and bill["due_date"]

    own = {"Authorization": f"Bearer {new_key(api_engine, 'customer', 'c3')}"}
    pdf = client.get(f"/api/v1/bills/{summary['id']}/pdf", headers=own)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert client.get(f"/api/v1/bills/{summary['id']}/pdf",
                      headers=keys.h("customer")).status_code == 403  # fmt: skip
    path = tmp_path / "bill.pdf"
    path.write_bytes(pdf.content)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    for needle in (bill["number"], "6.00", "generation", "retail", bill["reference"],
                   bill["scan_line"], "Cy Postpaid"):  # fmt: skip
        assert needle in text, needle
    ARTIFACTS.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile",
                    str(path), str(ARTIFACTS / "bill")], check=True, timeout=60)  # fmt: skip
    with Image.open(ARTIFACTS / "bill.png") as page:
        gray = page.convert("L")
        dark = gray.histogram()[:128]
        dark_pixels = sum(dark)
        assert dark_pixels > 0.005 * gray.width * gray.height, "page one is blank"

    html = client.get(f"/api/v1/bills/{summary['id']}/html", headers=own)
    assert html.status_code == 200 and "<svg" in html.text and bill["scan_line"] in html.text
    assert 'src="data:image/svg+xml' in html.text  # the payment QR code

    events = client.get("/api/v1/events", params={"kind": "bill_issued"}, headers=h).json()
    assert {e["reason"].split(" ")[1] for e in events} >= {bill["number"]}

    wait_for(lambda: inbox.messages, timeout=10)
    (mail,) = inbox.messages
    assert mail["To"] == "cy@example.org" and bill["number"] in mail["Subject"]
    attachments = [p for p in mail.walk() if p.get_content_type() == "application/pdf"]
    assert len(attachments) == 1
    assert attachments[0].get_payload(decode=True)[:5] == b"%PDF-"
