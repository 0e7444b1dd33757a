"""Everything the insights read from the database, in one place: plain values out (the
analysis modules never see a connection)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Connection

from hub.ingest.model import RELAY_OFF_KINDS as OFF_KINDS
from hub.ingest.model import RELAY_ON_KINDS as ON_KINDS
from hub.ingest.model import relay_reported
from hub.insights.anomalies import Mismatch, Samples, Span
from hub.insights.series import Series, epoch, ints
from hub.models import (
    Account,
    Bill,
    Customer,
    Event,
    InsightOffer,
    JournalEntry,
    JournalLine,
    Meter,
    PostedUsage,
    ProfileField,
    ReadingMismatch,
    Tariff,
    table,
)
from hub.rating.tariffs import load_histories
from protocol.tariff import Tariff as TariffDoc

_accounts = table(Account)
_bills = table(Bill)
_customers = table(Customer)
_events = table(Event)
_offers = table(InsightOffer)
_entries = table(JournalEntry)
_lines = table(JournalLine)
_meters = table(Meter)
_posted = table(PostedUsage)
_profile = table(ProfileField)
_mismatch = table(ReadingMismatch)
_tariffs = table(Tariff)

OPT_OUT_FIELD = "offers_opt_out"  # profile field: "yes" opts the customer out of offers


@dataclass(frozen=True)
class MeterData:
    series: Series
    off: list[Span]  # when the supply was meant to be off, in the window
    cutoffs: list[int]  # epoch s of each credit disconnection in the window
    mismatches: list[Mismatch]
    # the records with a current (``posted_usage.current_mean_a``): end, mean current, register
    samples: Samples = field(default_factory=lambda: samples_of([]))

    def since(self, moment: int) -> MeterData:
        """The same with only the records starting at or after ``moment`` (samples: ending
        after it)."""
        s = self.samples
        keep = s.at > moment
        samples = Samples(s.at[keep], s.current_a[keep], s.register[keep])
        return MeterData(self.series.since(moment), self.off, self.cutoffs, self.mismatches,
                         samples)  # fmt: skip


def samples_of(rows: Sequence[tuple[int, float, int]]) -> Samples:
    """``Samples`` from (interval end, mean current, register at the end) per record."""
    return Samples(
        ints([r[0] for r in rows]),
        np.asarray([r[1] for r in rows], dtype=float),
        ints([r[2] for r in rows]),
    )


@dataclass(frozen=True)
class CustomerData:
    id: str
    protected: bool
    opted_out: bool
    service_class: str
    currency: str
    balance: int
    meters: list[MeterData]
    spend: list[tuple[int, int]]
    topups: list[tuple[int, int]]
    late_bills: int
    offer_tariffs: list[str] = field(default_factory=list)  # tariffs marked ``"offer": true``


def customer_ids(conn: Connection) -> list[str]:
    return list(conn.execute(select(_customers.c.id).order_by(_customers.c.id)).scalars())


def exists(conn: Connection, customer_id: str) -> bool:
    found = conn.execute(select(_customers.c.id).where(_customers.c.id == customer_id)).first()
    return found is not None


def read_customer(
    conn: Connection, customer_id: str, *, since: datetime, now: datetime, history: datetime,
) -> CustomerData:  # fmt: skip
    """What the analysis of one customer needs, from ``since`` to ``now``; its meters' records
    from ``history`` on (the months compared year on year)."""
    row = conn.execute(select(_customers.c.protected).where(_customers.c.id == customer_id)).one()
    fields = dict(
        conn.execute(
            select(_profile.c.field, _profile.c.value).where(
                (_profile.c.customer_id == customer_id) & (_profile.c.scope == "")
            )
        ).all()
    )
    account = conn.execute(
        select(_accounts.c.balance, _accounts.c.currency).where(_accounts.c.id == customer_id)
    ).one()
    meter_rows = conn.execute(
        select(_meters.c.id, _meters.c.service, _meters.c.tariff_id, _meters.c.timezone)
        .where(_meters.c.customer_id == customer_id)
        .order_by(_meters.c.id)
    ).all()
    meters = [_meter(conn, *m, since=since, now=now, history=history) for m in meter_rows]
    flows = conn.execute(
        select(_entries.c.kind, _entries.c.effective_at, _lines.c.amount)
        .join(_entries, _entries.c.id == _lines.c.entry_id)
        .where(
            (_lines.c.account_id == customer_id)
            & (_entries.c.effective_at >= since)
            & (_entries.c.effective_at < now)
        )
    ).all()
    spend = [(epoch(at), -a) for k, at, a in flows if k in ("usage", "standing") and a < 0]
    topups = [(epoch(at), a) for k, at, a in flows if k == "topup" and a > 0]
    late = conn.execute(
        select(func.count())
        .select_from(_bills)
        .where(
            (_bills.c.customer_id == customer_id)
            & (_bills.c.status == "open")
            & (_bills.c.due_date < now.date())
        )
    ).scalar_one()
    return CustomerData(
        id=customer_id,
        protected=bool(row.protected),
        opted_out=fields.get(OPT_OUT_FIELD, "").lower() in ("yes", "true", "1"),
        service_class=fields.get("service_class", ""),
        currency=account.currency,
        balance=int(account.balance),
        meters=meters,
        spend=spend,
        topups=topups,
        late_bills=int(late),
        offer_tariffs=offer_tariffs(conn),
    )


def _meter(
    conn: Connection,
    meter_id: str,
    service: str,
    tariff: str | None,
    zone: str,
    *,
    since: datetime,
    now: datetime,
    history: datetime,
) -> MeterData:
    rows = conn.execute(
        select(
            _posted.c.interval_start,
            _posted.c.interval_end,
            _posted.c.import_start,
            _posted.c.import_end,
            _posted.c.segment,
            _posted.c.current_mean_a,
        )
        .where(
            (_posted.c.meter_id == meter_id)
            & (_posted.c.interval_start >= history)
            & (_posted.c.interval_start < now)
        )
        .order_by(_posted.c.interval_start, _posted.c.seq)
    ).all()
    start = ints([epoch(r[0]) for r in rows])
    end = ints([epoch(r[1]) for r in rows])
    i_start = ints([r[2] for r in rows])
    i_end = ints([r[3] for r in rows])
    series = Series(
        meter_id,
        str(service),
        tariff,
        zone,
        start,
        end,
        (i_end - i_start).clip(min=0),
        ints([r[4] for r in rows]),
        i_start,
        i_end,
    )
    events = conn.execute(
        select(_events.c.kind, _events.c.at, _events.c.data)
        .where((_events.c.meter_id == meter_id) & (_events.c.at >= since) & (_events.c.at < now))
        .order_by(_events.c.at, _events.c.id)
    ).all()
    mismatches = [
        Mismatch(epoch(r.at), int(r.reading), int(r.import_start), int(r.import_end), r.source)
        for r in conn.execute(
            select(_mismatch).where(
                (_mismatch.c.meter_id == meter_id)
                & (_mismatch.c.at >= since)
                & (_mismatch.c.at < now)
            )
        ).all()
    ]
    cutoffs = [
        epoch(at)
        for kind, at, data in events
        if kind == "disconnect" and (data or {}).get("cause", "credit") == "credit"
    ]
    samples = samples_of([(epoch(r[1]), float(r[5]), int(r[3])) for r in rows if r[5] is not None])
    return MeterData(series, off_spans(events, epoch(now)), cutoffs, mismatches, samples)


def relay_state(kind: str, data: dict[str, Any] | None) -> bool | None:
    """What an event says of the relay (``hub.ingest.model.relay_reported``): True on."""
    state = relay_reported(kind, data)
    return None if state is None else state == "on"


def off_spans(events: Sequence[Any], now: int) -> list[Span]:
    """When the supply was meant to be off: from a disconnect (or the relay reading off) until
    a reconnect (or the relay reading on again, when no disconnect is in force). The relay
    reading on while a disconnect is in force marks the span ``forced``."""
    spans: list[Span] = []
    since: int | None = None
    wanted_off = forced = False
    for kind, at, data in events:
        moment = epoch(at)
        state = relay_state(kind, data)
        if kind in OFF_KINDS or (state is False and since is None):
            if since is None:
                since, forced = moment, False
            wanted_off = wanted_off or kind in OFF_KINDS
        elif since is not None and (kind in ON_KINDS or (state is True and not wanted_off)):
            spans.append(Span(since, moment, forced))
            since, wanted_off = None, False
        elif since is not None and state is True:
            forced = True
    if since is not None:
        spans.append(Span(since, now, forced))
    return spans


def tariffs(conn: Connection, ids: set[str]) -> dict[str, TariffDoc]:
    """The newest version of each tariff in ``ids``."""
    histories = load_histories(conn, ids)
    return {tid: h.tariffs[-1] for tid, h in histories.items()}


def offer_tariffs(conn: Connection) -> list[str]:
    return sorted(conn.execute(select(_tariffs.c.id).where(_tariffs.c.offer.is_(True))).scalars())


def peer_usage(
    conn: Connection, service: str, tariff: str | None, since: datetime, now: datetime
) -> list[tuple[str, str, int, int, int]]:
    """(meter, service class, energy, first start, last end) of every meter of ``service`` on
    ``tariff`` with records from ``since`` to ``now``."""
    cls = (
        select(_profile.c.value)
        .where(
            and_(
                _profile.c.customer_id == _meters.c.customer_id,
                _profile.c.field == "service_class",
                _profile.c.scope == "",
            )
        )
        .scalar_subquery()
    )
    rows = conn.execute(
        select(
            _meters.c.id,
            cls,
            func.sum(_posted.c.import_end - _posted.c.import_start),
            func.min(_posted.c.interval_start),
            func.max(_posted.c.interval_end),
        )
        .join(_posted, _posted.c.meter_id == _meters.c.id)
        .where(
            (_meters.c.service == service)
            & (_meters.c.tariff_id == tariff)
            & (_posted.c.interval_start >= since)
            & (_posted.c.interval_start < now)
        )
        .group_by(_meters.c.id)
    ).all()
    return [(m, c or "", int(e or 0), epoch(a), epoch(b)) for m, c, e, a, b in rows]


def recorded_offers(conn: Connection, customer_id: str, period: str) -> list[dict[str, Any]]:
    rows = (
        conn.execute(
            select(_offers)
            .where((_offers.c.customer_id == customer_id) & (_offers.c.period == period))
            .order_by(_offers.c.id)
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


def record_offers(
    conn: Connection,
    customer_id: str,
    period: str,
    offers: Sequence[dict[str, Any]],
    now: datetime,
) -> None:
    """Each offer not yet recorded for this customer, period and kind (one per kind)."""
    have = {r["kind"] for r in recorded_offers(conn, customer_id, period)}
    for o in offers:
        if o["kind"] in have:
            continue
        conn.execute(
            _offers.insert().values(
                customer_id=customer_id,
                period=period,
                kind=o["kind"],
                tariff_id=o.get("tariff"),
                saving=o.get("saving"),
                reason=o["reason"][:500],
                created_at=now,
            )
        )


def mark_shown(conn: Connection, ids: Sequence[int], now: datetime) -> None:
    if ids:
        conn.execute(_offers.update().where(_offers.c.id.in_(ids)).values(shown_at=now))


def anomaly_keys(conn: Connection, meters: Sequence[str]) -> set[str]:
    rows = conn.execute(
        select(_events.c.data).where((_events.c.kind == "anomaly") & _events.c.meter_id.in_(meters))
    ).scalars()
    return {str((d or {}).get("key")) for d in rows}


def add_event(
    conn: Connection, kind: str, *, meter: str, reason: str, at: datetime, data: dict[str, Any]
) -> None:
    conn.execute(
        _events.insert().values(kind=kind, meter_id=meter, reason=reason[:500], at=at, data=data)
    )


def anomalies_list(conn: Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(_events.c.id, _events.c.meter_id, _events.c.reason, _events.c.at, _events.c.data)
        .where(_events.c.kind == "anomaly")
        .order_by(_events.c.id.desc())
        .limit(limit)
    ).all()
    return [{"id": i, "meter": m, "reason": r, "at": a, **(d or {})} for i, m, r, a, d in rows]
