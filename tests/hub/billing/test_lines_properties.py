"""hypothesis: for any split of usage across months and sources, and any arrival order against
the monthly runs, every bill's lines sum exactly to its charges, and every ledger amount is
billed exactly once (on its month's bill or, late, as an adjustment on a later one)."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.billing.lines import Item, LineKey, Totals, compose, month_totals, sums
from hub.billing.periods import Period

UTC_ZONE = ZoneInfo("UTC")
KEYS = [LineKey("electricity", "gen", "generation", "kWh"),
        LineKey("electricity", "grid", "distribution", "kWh"),
        LineKey("water", "water-co", "distribution", "m3")]  # fmt: skip
FIRST = Period(2027, 1)

usage = st.tuples(
    st.integers(0, 5),  # month after FIRST
    st.integers(0, 7),  # run after which it is committed (0: before the first run)
    st.sampled_from([*KEYS, None]),  # None: a payment
    st.integers(-500, 100_000),  # amount (negative: a reversal)
    st.integers(0, 50_000),  # quantity
    st.sampled_from(["agent", "import"]),  # the source: the same ledger either way
)


def month(n: int) -> Period:
    p = FIRST
    for _ in range(n):
        p = p.next()
    return p


@settings(max_examples=200, deadline=None)
@given(st.lists(usage, max_size=60), st.integers(0, 2))
def test_lines_sum_and_every_amount_is_billed_once(records: list, first_run: int) -> None:
    billed: Totals = {}
    floor: Period | None = None
    stated = {"charges": 0, "payments": 0}
    for run in range(first_run, 6):
        period = month(run)
        visible = [
            Item("c", datetime(p.year, p.month, 15, tzinfo=UTC), key, q, a)
            for m, arrival, key, a, q, _source in records
            if arrival <= run and (p := month(m)) <= period
        ]
        floor = floor or period
        totals, rates = month_totals(visible, UTC_ZONE, floor)
        lines = compose(period, totals, billed, rates)
        total = sums(lines)
        assert total.charges == sum(ln.amount for ln in lines if ln.kind != "payment")
        assert all(ln.for_period < period for ln in lines if ln.kind == "adjustment")
        stated["charges"] += total.charges
        stated["payments"] += total.payments
        for ln in lines:
            q, a = billed.get((ln.key, ln.for_period), (0, 0))
            billed[(ln.key, ln.for_period)] = (q + ln.quantity, a + ln.amount)
    # after the last run everything committed up to it is billed exactly once, per key
    final = [r for r in records if r[1] <= 5]
    for key in [*KEYS, None]:
        ledger = sum(a for _, _, k, a, _, _ in final if k == key)
        on_bills = sum(a for (k, _), (_, a) in billed.items() if k == key)
        assert on_bills == ledger
    assert stated["charges"] == sum(a for _, _, k, a, _, _ in final if k is not None)
