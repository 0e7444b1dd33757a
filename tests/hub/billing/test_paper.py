"""Paper bills at the optimal mailing location (issue 18 item 5) on a real SQLite file: a
billing run routes each paper bill to its print site (customers near each of two sites go to
it), a full site overflows to the next, a postal code no site serves is a paper_unroutable
event, a re-run routes nothing twice, and the day's batch PDF (pdftotext) holds the bills in
postal-code order, each on an odd page, the address inside the DIN 5008 window field. Overflow
and unroutable bills also run on PostgreSQL."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from hub.billing.batches import batch
from hub.billing.periods import Period
from hub.billing.printsites import NewSite, create_site
from hub.billing.profiles import import_profiles
from hub.billing.render import Window
from hub.billing.routing import Zone
from hub.billing.run import RunResult, run_billing
from hub.billing.settings import BillingSettings
from hub.billing.views import bill_document
from hub.db import read_tx, run_tx, write_tx
from hub.ledger import create_customer
from hub.models import Event, table, utcnow

SETTINGS = BillingSettings(timezone="UTC", smtp_url="")
PERIOD = Period.of(utcnow(), UTC)  # customers made now exist before its end
NOW = PERIOD.end(UTC) + timedelta(hours=1)
DAY = NOW.date()
MM = 72 / 25.4  # PDF points per millimetre
# North prints near N postal codes, South near S ones; both reach the other's area dearer.
NORTH = NewSite("north", "North Print", 50, "USD", 100,
                (Zone("N", 20, 10), Zone("S", 60, 40)))  # fmt: skip
SOUTH = NewSite("south", "South Print", 45, "USD", 100,
                (Zone("S", 15, 8), Zone("N", 70, 45)))  # fmt: skip


def world(engine: Engine, customers: dict[str, str], *sites: NewSite) -> None:
    """Customers (id -> postal code) on paper, and the print sites."""
    for cid in customers:
        run_tx(engine, lambda s, cid=cid: create_customer(s, cid, f"Name {cid}", "USD"))
    rows = [{"customer": cid, "address": f"{cid} High Street, Flat 2", "postal_code": code,
             "country": "GB", "delivery": "paper"} for cid, code in customers.items()]  # fmt: skip
    assert import_profiles(engine, rows, source="admin")["accepted"] == len(rows)
    with write_tx(engine) as conn:
        for site in sites:
            create_site(conn, site, NOW)


def run(engine: Engine) -> RunResult:
    return run_tx(engine, lambda s: run_billing(s.connection(), PERIOD, SETTINGS, NOW))


def deliveries(engine: Engine, result: RunResult) -> dict[str, dict[str, Any]]:
    with read_tx(engine) as conn:
        docs = [bill_document(conn, b) for b in result.bills]
    return {d["customer"]: d["delivery"][0] for d in docs if d["delivery"]}


def unroutable(engine: Engine) -> list[Any]:
    events = table(Event)
    with read_tx(engine) as conn:
        return list(conn.execute(select(events).where(events.c.kind == "paper_unroutable")))


def test_customers_go_to_the_site_near_them(sqlite_engine: Engine) -> None:
    world(sqlite_engine, {"c1": "N1 2AB", "c2": "S9 9ZZ", "c3": "n4-7cd"}, NORTH, SOUTH)
    routes = deliveries(sqlite_engine, run(sqlite_engine))
    assert {c: d["site"] for c, d in routes.items()} == {"c1": "north", "c2": "south",
                                                         "c3": "north"}  # fmt: skip
    c1 = routes["c1"]
    assert c1["channel"] == "paper" and c1["status"] == "routed" and c1["day"] == str(DAY)
    assert c1["cost"] == "0.70" and c1["co2_g"] == 10 and "lowest" in c1["reason"]
    assert [(c["site"], c["cost"], c["eligible"]) for c in c1["candidates"]] == [
        ("north", "0.70", True), ("south", "1.15", True),
    ]  # fmt: skip
    assert routes["c2"]["cost"] == "0.60"
    assert unroutable(sqlite_engine) == []


def test_a_full_site_overflows_to_the_next_and_a_rerun_routes_nothing_twice(
    engine: Engine,
) -> None:
    small = NewSite("north", "North Print", 50, "USD", 2, NORTH.zones)
    world(engine, {"c1": "N1 1AA", "c2": "N1 1AB", "c3": "N1 1AC"}, small, SOUTH)
    first = run(engine)
    routes = deliveries(engine, first)
    assert [routes[c]["site"] for c in ("c1", "c2", "c3")] == ["north", "north", "south"]
    north = routes["c3"]["candidates"][0]
    assert north["eligible"] is False and north["why"] == "full: 2 of 2 used that day"
    again = run(engine)
    assert not again.created and again.bills == first.bills
    assert deliveries(engine, again) == routes


def test_a_postal_code_no_site_serves_is_an_operator_event(engine: Engine) -> None:
    world(engine, {"c1": "N1 1AA", "c2": "E1 6AN"}, NORTH, SOUTH)
    routes = deliveries(engine, run(engine))
    assert routes["c1"]["site"] == "north"
    assert routes["c2"]["status"] == "unroutable" and routes["c2"]["site"] is None
    assert routes["c2"]["reason"] == "no print site serves this postal code"
    (event,) = unroutable(engine)
    assert event.data["customer"] == "c2" and event.data["postal_code"] == "E1 6AN"
    assert "no print site serves" in event.reason
    run(engine)
    assert len(unroutable(engine)) == 1


def test_the_window_holds_at_most_six_address_lines() -> None:
    address = "Flat 2, Mill House\n3 Mill Lane, Old Town, Borough"
    window = Window.of(issuer="SMSA", notes="Bill X", name="Ada", address=address,
                       postal_code="N1 2AB", country="GB")  # fmt: skip
    assert window.lines == ("Ada", "Flat 2", "Mill House", "3 Mill Lane, Old Town, Borough",
                            "N1 2AB", "GB")  # fmt: skip


def pdf_pages(pdf: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "batch.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout  # fmt: skip
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


def word_boxes(pdf_path: Path, page: int) -> list[tuple[str, float, float, float, float]]:
    html = subprocess.run(["pdftotext", "-bbox", "-f", str(page), "-l", str(page),
                           str(pdf_path), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout  # fmt: skip
    pattern = r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)<'
    return [(w, float(a), float(b), float(c), float(d))
            for a, b, c, d, w in re.findall(pattern, html)]  # fmt: skip


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs poppler-utils (pdftotext)")
def test_the_batch_pdf_is_in_postal_code_order_each_bill_on_an_odd_page(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    codes = {"c1": "N3 1AA", "c2": "N1 9ZZ", "c3": "S1 1AA", "c4": "N2 5BB"}
    world(sqlite_engine, codes, NORTH, SOUTH)
    result = run(sqlite_engine)
    with read_tx(sqlite_engine) as conn:
        numbers = {d["customer"]: d["number"] for d in (bill_document(conn, b)
                                                        for b in result.bills)}  # fmt: skip
        pdf = batch(conn, "north", DAY)
    pages = pdf_pages(pdf, tmp_path)
    starts = [n for n, text in enumerate(pages, start=1) if "Statement SMSA-" in text]
    assert len(starts) == 3 and all(n % 2 == 1 for n in starts), starts
    firsts = [pages[n - 1] for n in starts]
    assert [next(c for c in ("c2", "c4", "c1") if numbers[c] in text) for text in firsts] == [
        "c2", "c4", "c1",
    ]  # fmt: skip
    assert "N1 9ZZ" in firsts[0] and "N2 5BB" in firsts[1] and "N3 1AA" in firsts[2]
    for n, text in enumerate(pages, start=1):
        if n not in starts and (n - 1) in starts:  # a one-page bill: its back is blank
            assert text.strip() == "", n
    assert len(pages) % 2 == 0

    words = word_boxes(tmp_path / "batch.pdf", starts[0])
    for first_word in ("Name", "GB"):  # the address's first and last line, first on the page
        _, x0, y0, x1, y1 = min((w for w in words if w[0] == first_word), key=lambda w: w[2])
        assert x0 >= 20 * MM and x1 <= 105 * MM, (first_word, x0, x1)  # DIN 5008 form B's
        assert y0 >= 45 * MM and y1 <= 90 * MM, (first_word, y0, y1)  # field, 85 x 45 mm
    with read_tx(sqlite_engine) as conn:
        assert len(pdf_pages(batch(conn, "south", DAY), tmp_path)) == 2
