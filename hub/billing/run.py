"""A billing run (I/O around the pure core): one bill per customer for a closed period, every
bill, its number and its paper route (``printsites.route_paper``) written in one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from hub.billing import store
from hub.billing.bill import POSTPAID, billing_of, make_bill
from hub.billing.ledgerview import load_entries, revenue_accounts
from hub.billing.lines import Item, compose, entry_items, month_totals
from hub.billing.periods import Period
from hub.billing.printsites import route_paper
from hub.billing.settings import BillingSettings
from hub.billing.subscriptions import post_due
from hub.errors import ConflictError
from hub.payments.allocate import apply_credit

log = logging.getLogger(__name__)


class PeriodOpenError(ConflictError):
    """The period has not ended yet."""


@dataclass(frozen=True)
class RunResult:
    period: Period
    created: bool  # False: the period had been billed; ``bills`` are that run's
    bills: list[int]
    events: list[dict[str, Any]] = field(default_factory=list)  # bill_issued, to announce


def run_billing(
    conn: Connection, period: Period, settings: BillingSettings, now: datetime
) -> RunResult:
    """Bill ``period`` in the caller's write transaction (see the package README). Runs
    serialise on the issuer's number counter; the same period again returns its bills."""
    zone = settings.zone
    end = period.end(zone)
    if end > now:
        raise PeriodOpenError(f"period {period} has not ended yet")
    issued = now.astimezone(zone)
    issuer = settings.bill_issuer
    last = store.lock_counter(conn, issuer, issued.year)
    if store.run_done(conn, period):
        return RunResult(period, False, store.bill_ids_for(conn, period))
    store.record_run(conn, period, now)
    post_due(conn, period, zone)  # this month's subscriptions, if the scheduler has not yet
    customers = store.billable_customers(conn, period, end)
    by_id = {c.id: c for c in customers}
    revenue = revenue_accounts(conn)
    items: dict[str, list[Item]] = {c.id: [] for c in customers}
    for entry in load_entries(conn, by_id, end):
        for item in entry_items(entry, by_id, revenue):
            items[item.customer].append(item)
    histories = store.histories(conn, by_id)
    ids: list[int] = []
    events: list[dict[str, Any]] = []
    for customer in customers:
        if not customer.existed and not items[customer.id]:
            continue
        history = histories.get(customer.id)
        floor = history.first if history is not None else period
        totals, rates = month_totals(items[customer.id], zone, floor)
        lines = compose(period, totals, history.billed if history else {}, rates)
        last += 1
        draft = make_bill(customer=customer.id, period=period, billing=billing_of(customer.flags),
                          currency=customer.currency, lines=lines,
                          balance_forward=history.balance if history else 0, issuer=issuer,
                          year=issued.year, seq=last, issued_on=issued.date(),
                          due_days=settings.bill_due_days)  # fmt: skip
        ids.append(store.insert_bill(conn, draft, now))
        if draft.billing == POSTPAID:  # credit carried from earlier payments pays it first
            apply_credit(conn, customer.id, customer.currency, settings.rules, now)
        events.append(store.bill_event(conn, ids[-1], draft, now))
    store.save_counter(conn, issuer, issued.year, last)
    route_paper(conn, ids, issued.date(), now)  # paper bills: to their print site, that day
    log.info("billed %s: %d bills", period, len(ids))
    return RunResult(period, True, ids, events)
