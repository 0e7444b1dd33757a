"""Insights for a customer: read (``reads``), analyse (``analyse``, pure), then record what
must happen once: offers once per customer, period and kind, each with its reason (a customer
sees each one once: the first time the customer's own key asks), anomalies raised once as
operator events (kind ``anomaly``, ``data`` with ``anomaly``, ``severity``, the evidence)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from hub.db import read_tx, write_tx
from hub.insights import reads
from hub.insights.anomalies import (
    Anomaly,
    AnomalySettings,
    bypass,
    change_point,
    energy_while_off,
    import_mismatch,
    register_resets,
)
from hub.insights.offers import (
    Offer,
    OfferSettings,
    emergency_offer,
    service_offers,
    tariff_offer,
    withheld,
)
from hub.insights.payments import Behaviour, PaymentFacts, behaviour
from hub.insights.peers import Comparison, compare_all
from hub.insights.profile import DEFAULT_WINDOWS, profile, tariff_windows
from hub.insights.reads import CustomerData, MeterData
from hub.insights.rerate import cost, days_covered
from hub.insights.series import DAY_S, epoch, ints, local_seconds
from hub.money import major
from protocol.tariff import Tariff

HISTORY_DAYS = 400  # the records read for the months compared (year on year: 13 months)


class InsightsSettings(BaseSettings):
    """Each also ``SMSA_HUB_INSIGHTS_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SMSA_HUB_INSIGHTS_", extra="ignore")

    window_days: int = Field(default=90, ge=14, le=400)
    min_saving: int = Field(default=100, ge=1)  # minor units over the window
    night_cutoffs: int = Field(default=2, ge=1)
    bypass_min_s: int = Field(default=3600, ge=1)  # current without energy this long: a bypass
    bypass_min_current_a: float = Field(default=0.5, gt=0)

    def offers(self) -> OfferSettings:
        return OfferSettings(self.min_saving, self.window_days, night_cutoffs=self.night_cutoffs)

    def anomalies(self) -> AnomalySettings:
        return AnomalySettings(
            min_current_a=self.bypass_min_current_a, min_bypass_s=self.bypass_min_s
        )


@dataclass(frozen=True)
class Insights:
    customer: str
    period: str
    usage: dict[str, Any]
    anomalies: list[Anomaly]
    offers: list[Offer]  # empty when withheld
    withheld: str | None
    payments: Behaviour
    facts: dict[str, dict[str, float]] = field(default_factory=dict)


def period_of(now: datetime) -> str:
    """The month (UTC) an analysis at ``now`` belongs to: the one ending at ``now`` when
    ``now`` is a month's first instant (a report for a closed period)."""
    return (now - timedelta(microseconds=1)).astimezone(UTC).strftime("%Y-%m")


def last_complete_month(now: datetime) -> str:
    """The month compared month on month and year on year: the last one ended by ``now``."""
    return period_of(now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0))


def daily_average(energy: int, first: int, last: int) -> int:
    """Energy per day over the whole days from ``first`` to ``last`` (epoch s)."""
    return energy // max(1, -(-(last - first) // DAY_S))


def analyse(
    data: CustomerData,
    tariffs: dict[str, Tariff],
    peers: dict[str, Comparison],
    now: datetime,
    settings: InsightsSettings,
) -> Insights:
    """Pure: the insights from what was read."""
    end = epoch(now)
    start = end - settings.window_days * DAY_S
    period = period_of(now)
    compared = last_complete_month(now)
    usage: dict[str, Any] = {}
    anomalies: list[Anomaly] = []
    offers: list[Offer] = []
    facts: dict[str, dict[str, float]] = {}
    cutoffs: list[int] = []
    for whole in data.meters:
        meter = whole.since(start)
        s = meter.series
        tariff = tariffs.get(s.tariff or "")
        windows = tariff_windows(tariff)
        shape = profile(s, windows, compared, history=whole.series)
        standard = shape if windows == DEFAULT_WINDOWS else profile(s, DEFAULT_WINDOWS, compared)
        comparison = peers.get(s.meter)
        usage[s.meter] = {
            "meter": s.meter,
            "service": s.service,
            "tariff": s.tariff,
            **shape.as_dict(),
            "comparison": comparison.as_dict() if comparison else None,
        }
        mine = facts.setdefault(s.service, {"daily_average": float(shape.daily_average)})
        for name, share in standard.windows.items():
            mine[f"share_{name}"] = share
        anomalies += meter_anomalies(meter, end, settings.anomalies())
        local = local_seconds(ints(meter.cutoffs), s.timezone)
        cutoffs += [int(x) % DAY_S // 60 for x in local.tolist()]
        if tariff is not None and s.tariff is not None:
            found = better_tariff(
                s.tariff, current=tariff, meter=meter, data=data, tariffs=tariffs, settings=settings
            )
            offers += [found] if found else []
    emergency = emergency_offer(cutoffs, settings.offers())
    offers += [emergency] if emergency else []
    offers += service_offers(facts)
    why = withheld(data.protected, data.opted_out)
    off = [span for m in data.meters for span in m.off]
    pay = behaviour(
        PaymentFacts(data.balance, data.spend, data.topups, off, data.late_bills, (start, end))
    )
    return Insights(
        data.id, period, usage, anomalies, [] if why else _one_per_kind(offers), why, pay, facts
    )


def meter_anomalies(
    meter: MeterData, end: int, settings: AnomalySettings | None = None
) -> list[Anomaly]:
    s = meter.series
    settings = settings or AnomalySettings()
    today = int(local_seconds(ints([end]), s.timezone)[0]) // DAY_S
    found = [
        change_point(s, settings, until_day=today),
        energy_while_off(s, meter.off),
        bypass(s.meter, meter.samples, settings),
        import_mismatch(s.meter, meter.mismatches),
        *register_resets(s),
    ]
    return [a for a in found if a is not None]


def better_tariff(
    current_id: str,
    *,
    current: Tariff,
    meter: MeterData,
    data: CustomerData,
    tariffs: dict[str, Tariff],
    settings: InsightsSettings,
) -> Offer | None:
    """Re-rate the meter's window on every tariff marked as an offer (same unit)."""
    s = meter.series
    days = days_covered(s)
    candidates: dict[str, Fraction] = {
        tid: cost(tariffs[tid], s, days)
        for tid in data.offer_tariffs
        if tid in tariffs and tid != current_id and tariffs[tid].unit in (None, current.unit)
    }
    if not candidates:
        return None
    money = lambda minor: major(minor, data.currency)  # noqa: E731
    return tariff_offer(
        current_id,
        current=cost(current, s, days),
        candidates=candidates,
        days=days,
        settings=settings.offers(),
        money=money,
    )


def _one_per_kind(offers: list[Offer]) -> list[Offer]:
    """One offer per kind (the tariff saving most), as offers are recorded."""
    seen: dict[str, Offer] = {}
    for o in offers:
        if o.kind not in seen or (o.saving or 0) > (seen[o.kind].saving or 0):
            seen[o.kind] = o
    return list(seen.values())


def read(
    conn: Connection, customer_id: str, now: datetime, settings: InsightsSettings
) -> tuple[CustomerData, dict[str, Tariff], dict[str, Comparison]]:
    since = now - timedelta(days=settings.window_days)
    history = now - timedelta(days=HISTORY_DAYS)
    data = reads.read_customer(conn, customer_id, since=since, now=now, history=history)
    ids = {m.series.tariff for m in data.meters if m.series.tariff}
    tariffs = reads.tariffs(conn, ids | set(data.offer_tariffs))
    groups: dict[tuple[str, str | None], dict[str, Comparison]] = {}
    peers: dict[str, Comparison] = {}
    for m in data.meters:
        group = (m.series.service, m.series.tariff)
        if group not in groups:  # one read and ranking per group of similar meters
            rows = reads.peer_usage(conn, *group, since, now)
            values = {meter: daily_average(e, a, b) for meter, _, e, a, b in rows}
            keys = {meter: cls for meter, cls, _, _, _ in rows}
            groups[group] = compare_all(values, keys)
        found = groups[group].get(m.series.meter)
        if found is not None:
            peers[m.series.meter] = found
    return data, tariffs, peers


def refresh(
    engine: Engine, customer_id: str, now: datetime, settings: InsightsSettings
) -> tuple[Insights, CustomerData]:
    """Analyse one customer, record its offers and raise its anomalies (once each)."""
    with read_tx(engine) as conn:
        data, tariffs, peers = read(conn, customer_id, now, settings)
    result = analyse(data, tariffs, peers, now, settings)
    with write_tx(engine) as conn:
        reads.record_offers(
            conn, customer_id, result.period, [o.as_dict() for o in result.offers], now
        )
        raise_anomalies(conn, result.anomalies, now)
    return result, data


def raise_anomalies(conn: Connection, anomalies: list[Anomaly], now: datetime) -> int:
    """Each anomaly not raised before as an ``anomaly`` event; how many were raised."""
    if not anomalies:
        return 0
    known = reads.anomaly_keys(conn, sorted({a.meter for a in anomalies}))
    raised = 0
    for a in anomalies:
        if a.key in known:
            continue
        evidence = {k: v for k, v in a.evidence.items() if isinstance(v, str | int | float)}
        data = {
            "anomaly": a.kind,
            "severity": a.severity,
            "key": a.key,
            "since": a.as_dict()["at"],
            **evidence,
        }
        reads.add_event(conn, "anomaly", meter=a.meter, reason=a.reason, at=now, data=data)
        known.add(a.key)
        raised += 1
    return raised


def customer_view(
    engine: Engine,
    customer_id: str,
    now: datetime,
    settings: InsightsSettings,
    *,
    by_customer: bool,
) -> dict[str, Any]:
    """The answer of ``GET /customers/{id}/insights``. The customer's own key sees each offer
    once (then it is marked shown); operators and admins see the period's offers with
    ``shown_at``."""
    result, data = refresh(engine, customer_id, now, settings)
    with write_tx(engine) as conn:
        recorded = reads.recorded_offers(conn, customer_id, result.period)
        if by_customer:
            recorded = [r for r in recorded if r["shown_at"] is None]
            reads.mark_shown(conn, [r["id"] for r in recorded], now)
    offers = [_offer_out(r, data.currency, by_customer) for r in recorded]
    return {
        "customer": customer_id,
        "period": result.period,
        "usage": {"meters": list(result.usage.values())},
        "anomalies": [a.as_dict() for a in result.anomalies],
        "offers": offers,
        "offers_withheld": result.withheld,
        "payments": result.payments.as_dict(),
    }


def _offer_out(row: dict[str, Any], currency: str, by_customer: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": row["kind"], "reason": row["reason"]}
    if row["tariff_id"] is not None:
        out["tariff"] = row["tariff_id"]
    if row["saving"] is not None:
        out["saving"] = major(int(row["saving"]), currency)
    if not by_customer:
        shown = row["shown_at"]
        out["shown_at"] = shown.isoformat() if shown is not None else None
    return out
