"""POST /tariffs (admin): a tariff as ``protocol.tariff.Tariff``, stored as its version 1."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError
from sqlmodel import Session, col, func, select

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write_created
from hub.api.jsonbody import HubRoute
from hub.api.schemas import TariffIn, TariffOut, TariffVersionIn
from hub.control.credit_state import queue_tariff_update_in
from hub.errors import ConflictError, InvalidInputError, NotFoundError
from hub.models import EntryKind, JournalEntry, Meter, Provider, Tariff, TariffVersion, utcnow
from hub.services.selection import latest_version
from protocol.tariff import Tariff as TariffDoc
from protocol.tariff import unit_problem

router = APIRouter(prefix="/tariffs", tags=["tariffs"], route_class=HubRoute)


def tariff_out(session: Session, tariff_id: str) -> TariffOut:
    tariff = session.get(Tariff, tariff_id)
    if tariff is None:
        raise NotFoundError("tariff", tariff_id)
    version = latest_version(session, tariff_id)
    doc: dict[str, Any] = json.loads(version.document)
    return TariffOut(
        id=tariff.id,
        name=tariff.name,
        currency=tariff.currency,
        version=version.version,
        valid_from=version.valid_from,
        components=[
            {k: v for k, v in c.items() if v not in (None, [], ())}
            for c in doc.get("components", [])
        ],
        offer=tariff.offer,
    )


def rated_until(session: Session, tariff_id: str, start: datetime) -> datetime | None:
    """The end of the latest usage interval of the tariff's meters already rated that ends at
    or after ``start`` (None: none). Such usage comes from a gateway whose clock is ahead; a
    version starting before it would make it rated with a version no longer in force at its end
    (invariant 5), so a new version starts after it."""
    latest: datetime | None = session.exec(
        select(func.max(JournalEntry.effective_at))
        .join(Meter, col(Meter.id) == col(JournalEntry.meter_id))
        .where(
            JournalEntry.kind == EntryKind.USAGE,
            col(JournalEntry.effective_at) >= start,
            Meter.tariff_id == tariff_id,
        )
    ).one()
    return latest


def check_units(session: Session, doc: TariffDoc) -> None:
    """A new version must still price every meter on the tariff in its service's unit."""
    services = session.exec(select(Meter.service).where(Meter.tariff_id == doc.id).distinct()).all()
    for service in sorted(services):
        problem = unit_problem(doc, service)
        if problem is not None:
            raise InvalidInputError("components", problem)


def check_providers(session: Session, doc: TariffDoc) -> None:
    for index, component in enumerate(doc.components):
        if session.get(Provider, component.provider) is None:
            raise InvalidInputError(
                f"components.{index}.provider", f"unknown provider {component.provider!r}"
            )


@router.post("", status_code=201, response_model=TariffOut)
def create(body: TariffIn, ctx: ContextDep, who: Admin) -> TariffOut:
    if body.currency != ctx.currency:
        raise InvalidInputError("currency", f"this hub settles in {ctx.currency}")
    fields = body.model_dump(exclude={"name", "valid_from", "offer"})
    doc = TariffDoc.model_validate(fields | {"version": 1})

    def work(session: Session) -> TariffOut:
        if session.get(Tariff, body.id) is not None:
            raise ConflictError(f"tariff {body.id!r} already exists")
        check_providers(session, doc)
        session.add(Tariff(id=body.id, currency=body.currency, name=body.name, offer=body.offer))
        session.flush()
        session.add(
            TariffVersion(
                tariff_id=body.id,
                version=1,
                valid_from=body.valid_from or utcnow(),
                document=doc.model_dump_json(),
            )
        )
        session.flush()
        return tariff_out(session, body.id)

    return write_created(ctx.engine, work, who, ("tariff", body.id), body.model_dump(mode="json"))


@router.post("/{tariff_id}/versions", status_code=201, response_model=TariffOut)
def add_version(tariff_id: str, body: TariffVersionIn, ctx: ContextDep, who: Admin) -> TariffOut:
    """The next version of a tariff. With MQTT, every meter on the tariff is then sent its
    credit state with the version in force (``queue_tariff_update_in``, in the same transaction)."""
    if body.currency != ctx.currency:
        raise InvalidInputError("currency", f"this hub settles in {ctx.currency}")

    def work(session: Session) -> TariffOut:
        # locked: a settler that rated with the older versions writes before or after us
        if session.get(Tariff, tariff_id, with_for_update=True) is None:
            raise NotFoundError("tariff", tariff_id)
        latest = latest_version(session, tariff_id)
        after = timedelta(microseconds=1)
        if body.valid_from is None:  # now, or just after the latest start if that is later
            start = max(utcnow(), latest.valid_from + after)
        elif body.valid_from <= latest.valid_from:
            raise InvalidInputError("valid_from", "must be after the latest version's start")
        else:
            start = body.valid_from
        rated = rated_until(session, tariff_id, start)
        if rated is not None and body.valid_from is not None:
            raise InvalidInputError(
                "valid_from", f"usage up to {rated.isoformat()} is already rated on this tariff"
            )
        if rated is not None:  # a gateway clock ahead of the hub's: start after its usage
            start = rated + after
        try:
            doc = TariffDoc(
                id=tariff_id,
                version=latest.version + 1,
                currency=body.currency,
                timezone=body.timezone,
                components=body.components,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidInputError(".".join(str(p) for p in err["loc"]), err["msg"]) from exc
        check_providers(session, doc)
        check_units(session, doc)
        session.add(
            TariffVersion(
                tariff_id=tariff_id,
                version=doc.version,
                valid_from=start,
                document=doc.model_dump_json(),
            )
        )
        session.flush()
        # the meters' new credit states, in the transaction that wrote the version
        queue_tariff_update_in(session.connection(), tariff_id, ttl=ttl)
        return tariff_out(session, tariff_id)

    ttl = timedelta(seconds=ctx.settings.command_ttl_s)
    out = write_created(ctx.engine, work, who, ("tariff_version", tariff_id),
                        body.model_dump(mode="json"))  # fmt: skip
    if ctx.ingest is not None:
        ctx.ingest.wake_commands()
    return out


@router.get("/{tariff_id}", response_model=TariffOut)
def get(tariff_id: str, session: SessionDep, _: Operator) -> TariffOut:
    return tariff_out(session, tariff_id)
