"""POST /remittances through a live server: a file of 100 scan lines from paper stubs, 5 with
a wrong check digit and 2 repeated, pays 93 bills once each and rejects 7 lines with their
reasons; the same file again pays nothing; unknown references and unreadable amounts are
rejected per line; the ledger's invariants hold throughout."""

from __future__ import annotations

import random

import httpx
from sqlalchemy import Engine
from stdnum import luhn

from hub.db import read_tx
from hub.ledger import get_account
from tests.hub.api.conftest import Keys
from tests.hub.payments.billed import billed_customers
from tests.hub.payments.ledgerpay import invariants


def wrong_check(line: str) -> str:
    return line[:-1] + str((int(line[-1]) + 1) % 10)


def post(client: httpx.Client, keys: Keys, text: str, role: str = "operator") -> httpx.Response:
    return client.post("/api/v1/remittances", content=text.encode(),
                       headers={**keys.h(role), "Content-Type": "text/plain"})  # fmt: skip


def test_hundred_stubs_pay_93_bills_once(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    billed = billed_customers(api_engine, client, keys.admin, 93)
    good = [row.scan_line for row in billed.values()]
    lines = good + good[:2] + [wrong_check(x) for x in good[10:15]]
    random.Random(18).shuffle(lines)
    assert len(lines) == 100

    r = post(client, keys, "\n".join(lines) + "\n")
    assert r.status_code == 200, r.text
    report = r.json()
    assert len(report["accepted"]) == 93 and len(report["rejected"]) == 7
    reasons = sorted(x["reason"].split(":")[0] for x in report["rejected"])
    assert reasons == ["duplicate stub"] * 2 + ["wrong check digit"] * 5
    assert {x["bill"] for x in report["accepted"]} == {int(row.id) for row in billed.values()}
    assert len({x["payment"] for x in report["accepted"]}) == 93
    with read_tx(api_engine) as conn:  # each customer paid its bill once: owes nothing, no credit
        assert all(get_account(conn, c).balance == 0 for c in billed)

    again = post(client, keys, "\n".join(lines)).json()  # the same stubs again pay nothing
    assert again["accepted"] == [] and len(again["rejected"]) == 100
    with read_tx(api_engine) as conn:
        assert all(get_account(conn, c).balance == 0 for c in billed)

    some = next(iter(billed.values()))
    bill = client.get(f"/api/v1/bills/{some.id}", headers=keys.h("admin")).json()
    assert bill["status"] == "paid"
    payment = next(x["payment"] for x in report["accepted"] if x["bill"] == some.id)
    split = client.get(f"/api/v1/payments/{payment}", headers=keys.h("operator")).json()
    assert {(a["provider"], a["tier"]) for a in split["allocations"]} == {
        ("gen", "generation"), ("ret", "retail")}  # fmt: skip
    assert split["credit"] == "0.00" and split["channel"] == "remittance"
    assert invariants(api_engine) == {}


def test_lines_rejected_with_their_reason(
    client: httpx.Client, keys: Keys, api_engine: Engine
) -> None:
    billed = billed_customers(api_engine, client, keys.admin, 1, prefix="rj")
    (row,) = billed.values()
    head = "202699999912"
    amount = "000000001333"
    unknown = f"{head} {amount} {luhn.calc_check_digit(head + amount)}"
    line = row.scan_line
    unparsable = f"{line[:13]}00000000I333 {line[-1]}"
    text = "\n".join([unknown, unparsable, "garbage", "", wrong_check(line)])
    report = post(client, keys, text).json()
    assert report["accepted"] == []
    assert [(x["line"], x["reason"].split(" (")[0]) for x in report["rejected"]] == [
        (1, "unknown reference"),
        (2, "amount does not parse"),
        (3, "not a scan line"),
        (5, "wrong check digit"),
    ]
    assert post(client, keys, line, role="customer").status_code == 403
    with read_tx(api_engine) as conn:
        assert get_account(conn, row.customer_id).balance == -int(row.amount_due)
