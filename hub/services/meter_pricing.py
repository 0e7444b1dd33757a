"""A meter's pricing: set at creation (``POST /meters``: a tariff, maybe a ``selection``) and
changed from a date (``PATCH /meters/{id}``: ``tariff``, ``selection``, ``from``).

Pricing is a history (``meter_pricing``, read by the ingest planner through
``hub.rating.pricing``): each row prices the meter from its ``start`` on, so the intervals
before a change are priced as before and those after it by the new tariff or selection. A
meter without rows is priced by its ``meters.tariff_id`` alone; its first change also writes
that as the first row. A change may not start before the end of the meter's newest settled
interval (settled entries are never priced again), nor before its latest change: 409, as for
a change of payers. In one
transaction: the row, the meter's ``tariff_id`` (the tariff it is now shown with), the audit
event (``meter_changed``, ``hub.audit``) and the meter's new credit state queued for its
gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.audit import METER_CHANGED, record_change
from hub.control.credit_state import queue_credit_states_in
from hub.errors import ConflictError, InvalidInputError, NotFoundError
from hub.models import Meter, MeterPricing, PostedUsage, Tariff
from hub.services.selection import SelectionSpec, check_selection, newest_doc
from protocol.tariff import unit_problem

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def check_tariff(session: Session, tariff_id: str, service: str) -> None:
    if session.get(Tariff, tariff_id) is None:
        raise InvalidInputError("tariff", f"unknown tariff {tariff_id!r}")
    problem = unit_problem(newest_doc(session, tariff_id), service)
    if problem is not None:
        raise InvalidInputError("tariff", problem)


def pricing_of(
    session: Session, tariff: str | None, selection: Mapping[str, Any] | None, service: str
) -> tuple[str, SelectionSpec | None]:
    """The meter's tariff and checked selection from a request: a selection chooses among its
    ``tariffs`` and, if given too, ``tariff``; the meter's tariff is then ``tariff`` or the
    first of them. 422 naming the field when invalid."""
    if tariff is not None:
        check_tariff(session, tariff, service)
    if selection is None:
        if tariff is None:
            raise InvalidInputError("tariff", "give a tariff or a selection")
        return tariff, None
    candidates = [*selection["tariffs"], *([tariff] if tariff is not None else [])]
    spec = check_selection(session, str(selection["policy"]), candidates, service)
    return tariff or spec.tariffs[0], spec


def _row(meter_id: str, start: datetime, tariff: str, spec: SelectionSpec | None) -> MeterPricing:
    chosen = None if spec is None else {"policy": spec.policy, "tariffs": list(spec.tariffs)}
    return MeterPricing(meter_id=meter_id, start=start, tariff_id=tariff, selection=chosen)


def start_pricing(session: Session, meter_id: str, tariff: str, spec: SelectionSpec | None) -> None:
    """A new meter's pricing: a row only when it has a selection."""
    if spec is not None:
        session.add(_row(meter_id, EPOCH, tariff, spec))


def change_pricing(
    session: Session, meter_id: str, given: Mapping[str, Any], *, key_id: int | None,
    now: datetime | None = None,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Apply ``given`` (``tariff``, ``selection``: ``{"policy", "tariffs"}`` or None, and
    ``from``, default now) in the caller's transaction; the changes made, per field ``{"from",
    "to", "at"}`` (``at``: from when), as audited. Nothing given, nothing changed."""
    if "tariff" not in given and "selection" not in given:
        return {}
    meter = session.get(Meter, meter_id)
    if meter is None:
        raise NotFoundError("meter", meter_id)
    start = given.get("from") or now or datetime.now(UTC)
    stmt = select(MeterPricing).where(MeterPricing.meter_id == meter_id)
    steps = list(session.exec(stmt.order_by(col(MeterPricing.start), col(MeterPricing.id))))
    settled = session.exec(
        select(func.max(PostedUsage.interval_end)).where(PostedUsage.meter_id == meter_id)
    ).one()
    if settled is not None and start < settled:
        raise ConflictError(f"from: the meter's intervals up to {settled} are settled")
    if steps and start < steps[-1].start:
        raise ConflictError(f"from: before the meter's latest pricing change, {steps[-1].start}")
    before = {"tariff": meter.tariff_id, "selection": steps[-1].selection if steps else None}
    selection = given.get("selection", before["selection"] if "tariff" not in given else None)
    tariff, spec = pricing_of(session, given.get("tariff"), selection, meter.service)
    row = _row(meter_id, start, tariff, spec)
    after = {"tariff": tariff, "selection": row.selection}
    changed = {name: {"from": before[name], "to": after[name], "at": start.isoformat()}
               for name in before if before[name] != after[name]}  # fmt: skip
    if not changed:
        return {}
    if not steps and meter.tariff_id is not None:
        session.add(_row(meter_id, EPOCH, meter.tariff_id, None))
    session.add(row)
    meter.tariff_id = tariff
    session.add(meter)
    session.flush()
    record_change(session, METER_CHANGED, key_id=key_id, subject=("meter", meter_id),
                  changed=changed, meter_id=meter_id)  # fmt: skip
    queue_credit_states_in(session.connection(), [meter_id], reason="meter changed")
    return changed
