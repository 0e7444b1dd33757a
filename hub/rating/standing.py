"""Daily standing charges (``per_day`` components), accrued once per meter and day.

Each provider's charge for day ``d`` is ``floor(n * daily) - floor((n - 1) * daily)`` with ``n``
the day's ordinal: the sub-unit remainder is carried implicitly by the date itself, so nothing
drifts, no state is stored, and the same day always gives the same amount. The entry's
idempotency key is ``standing:<meter>:<date>``: running the job twice for a day posts nothing
new. The payer is the meter's paying account(s), as for usage.

``standing_charges_job`` is the scheduler's entry point (module level, taking ids).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from math import floor
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from hub import ledger
from hub.audit import job_audit
from hub.db import make_engine, write_tx
from hub.models import EntryKind, Meter, Provider, table
from hub.rating.payers import SplitRuleError, load_sharers, payer_weights, portions
from hub.rating.tariffs import load_histories
from protocol.rating import standing_charges
from protocol.tariff import Tariff

log = logging.getLogger(__name__)

_meters = table(Meter)
_providers = table(Provider)


def day_shares(tariff: Tariff, day: date) -> dict[str, int]:
    """Each provider's whole-unit standing charge for ``day`` (see the module docstring)."""
    n = day.toordinal()
    out: dict[str, int] = {}
    for provider, daily in standing_charges(tariff, 1).items():
        amount = floor(Fraction(n) * daily) - floor(Fraction(n - 1) * daily)
        if amount:
            out[provider] = amount
    return out


def accrue_standing_charges(
    engine: Engine, day: date, meter_ids: Sequence[str] | None = None
) -> int:
    """Post ``day``'s standing charge for each meter (all meters with a tariff by default);
    returns how many entries were newly posted."""
    with write_tx(engine) as conn:
        stmt = select(_meters).where(_meters.c.tariff_id.is_not(None))
        if meter_ids is not None:
            stmt = stmt.where(_meters.c.id.in_(sorted(meter_ids)))
        meters = conn.execute(stmt.order_by(_meters.c.id)).all()
        posted = 0
        for meter in meters:
            posted += _accrue_one(conn, meter, day)
        job_audit(conn, "standing_charges", posted, {"day": day.isoformat()})
    return posted


def _utc(moment: datetime | str) -> datetime:
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _accrue_one(conn: Connection, meter: Any, day: date) -> int:
    meter_id: str = meter.id
    tariff_id: str = meter.tariff_id
    history = load_histories(conn, [tariff_id]).get(tariff_id)
    if history is None:
        return 0
    start = datetime.combine(day, datetime.min.time(), UTC)
    if _utc(meter.created_at) > start:
        return 0  # a meter pays for the whole days it has existed, from the day after creation
    tariff = history.at(start)
    shares = day_shares(tariff, day)
    if not shares:
        return 0
    sharers = load_sharers(conn, [meter_id]).get(meter_id, ())
    try:
        weights = payer_weights(meter.customer_id, sharers, meter.split_rule)
    except SplitRuleError as exc:
        log.warning("standing charge of %s on %s not posted: %s", meter_id, day, exc)
        return 0
    accounts: dict[str, str] = dict(
        conn.execute(
            select(_providers.c.id, _providers.c.account_id).where(
                _providers.c.id.in_(sorted(shares))
            )
        ).all()
    )
    lines = [(a, -v) for a, v in portions(sum(shares.values()), weights).items()]
    lines += [(accounts[p], v) for p, v in sorted(shares.items())]
    result = ledger.post(
        conn, EntryKind.STANDING, lines, tariff.currency,
        effective_at=start + timedelta(days=1), memo=f"standing charge {day.isoformat()}",
        metadata={"tariff": tariff.id, "version": tariff.version, "day": day.isoformat()},
        idempotency_key=f"standing:{meter_id}:{day.isoformat()}", meter_id=meter_id,
        enforce_floor=False,
    )  # fmt: skip
    return 1 if result.created else 0


def standing_charges_job(
    db_url: str, day: str | None = None, meter_ids: list[str] | None = None
) -> int:
    """Scheduler entry point: accrue ``day`` (ISO date; default yesterday, UTC)."""
    when = date.fromisoformat(day) if day else (datetime.now(UTC).date() - timedelta(days=1))
    engine = make_engine(db_url)
    try:
        return accrue_standing_charges(engine, when, meter_ids)
    finally:
        engine.dispose()
