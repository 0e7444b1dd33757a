"""A usage entry with a priority fee on a bill (``hub.billing.lines``): the fee is between the
provider and the platform, so the customer's lines show each provider's whole share and no
platform line, and still sum to the charge; a reversal likewise."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.billing.lines import EntryView, entry_items, without_fees

AT = datetime(2027, 1, 5, tzinfo=UTC)
REVENUE = {"provider:gen-dear": ("gen-dear", "generation"),
           "provider:wires": ("wires", "distribution"),
           "platform:USD": ("platform", "platform")}  # fmt: skip
LINES = [("cust", -19), ("provider:gen-dear", 14), ("provider:wires", 5),
         ("provider:gen-dear", -2), ("platform:USD", 2)]  # fmt: skip


def test_the_customer_sees_each_share_whole_and_no_fee() -> None:
    plain = without_fees(LINES, {"gen-dear": 2})
    assert plain == LINES[:3]
    entry = EntryView(1, AT, True, "electricity", "kWh", 1000, plain)
    items = entry_items(entry, {"cust": object()}, REVENUE)
    assert {i.key.provider: i.amount for i in items if i.key} == {"gen-dear": 14, "wires": 5}
    assert sum(i.amount for i in items) == 19


def test_a_reversal_drops_the_negated_fee_lines() -> None:
    negated = [(a, -v) for a, v in LINES]
    assert without_fees(negated, {"gen-dear": 2}, sign=-1) == negated[:3]


def test_lines_without_the_fee_are_left_alone() -> None:
    assert without_fees(LINES[:3], {"gen-dear": 2}) == LINES[:3]
