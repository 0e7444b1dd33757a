"""Meters: POST and PATCH (admin), GET one or all, their commands, pricing mismatches and
change history (operator), their measured supply mix (admin, provider), and operator
disconnect / reconnect. The per-field rules live in ``hub.services.meters``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlmodel import Session, col, select

from hardware.errors import RegisterMapError
from hardware.regmap import ENERGY_REGISTER, load_model
from hub import fleet
from hub.api.context import HubContext
from hub.api.deps import (
    Admin,
    ContextDep,
    Operator,
    ProviderOrAdmin,
    SessionDep,
    write,
    write_created,
)
from hub.api.jsonbody import HubRoute
from hub.api.routes.customers import change_out
from hub.api.routes.tariffs import latest_doc
from hub.api.schemas import (
    MAX_ID,
    BusOut,
    ChangeOut,
    CommandIn,
    CommandOut,
    CommandState,
    CommandStep,
    ConsumptionDay,
    MeterIn,
    MeterOut,
    MeterPatch,
    MismatchOut,
    SupplyMixIn,
    SupplyMixOut,
    sharer_pairs,
)
from hub.audit import METER_CHANGED
from hub.audit import history as changes_of
from hub.billing.access import provider_of
from hub.commands.store import history, unapplied
from hub.errors import ConflictError, InvalidInputError, NotFoundError
from hub.ingest.bus import read_bus
from hub.keys import Principal
from hub.models import Account, Customer, Gateway, Meter, Role, Tariff, UsageMismatch
from hub.money import major
from hub.services.meters import add_supply_mix, change_payers, check_sharers, set_sharers
from hub.services.operator import operator_command
from protocol.tariff import unit_problem

router = APIRouter(prefix="/meters", tags=["meters"], route_class=HubRoute)


def meter_out(session: Session, meter: Meter, pending: str | None = None) -> MeterOut:
    balance = None
    if meter.customer_id is not None:
        account = session.get(Account, meter.customer_id)
        if account is not None:
            balance = major(account.balance, account.currency)
    return MeterOut(
        id=meter.id,
        gateway=meter.gateway_id,
        relay=meter.relay,
        online=meter.online,
        last_seq=meter.last_seq,
        import_wh=meter.import_wh,
        customer=meter.customer_id,
        tariff=meter.tariff_id,
        service=meter.service,
        last_seen_at=meter.last_seen_at,
        balance=balance,
        pending_command=pending,
    )


def get_meter(session: Session, meter_id: str) -> Meter:
    meter = session.get(Meter, meter_id)
    if meter is None:
        raise NotFoundError("meter", meter_id)
    return meter


def check_model(name: str, service: str) -> None:
    """The register map the gateway reads the meter with must meter ``service``."""
    try:
        model = load_model(name)
    except RegisterMapError as exc:
        raise InvalidInputError("model", f"unknown register map {name!r}: {exc.reason}") from exc
    if model.kind != "meter":
        raise InvalidInputError("model", f"{name!r} is not a meter")
    metered = model.service or "electricity"
    if metered != service:
        unit = model.register(ENERGY_REGISTER).unit
        raise InvalidInputError(
            "model", f"{name!r} meters {metered} (its register counts {unit}), not {service}"
        )


@router.post("", status_code=201, response_model=MeterOut)
def create(body: MeterIn, ctx: ContextDep, who: Admin) -> MeterOut:
    def work(session: Session) -> MeterOut:
        if session.get(Meter, body.id) is not None:
            raise ConflictError(f"meter {body.id!r} already exists")
        for field, model, value in (
            ("gateway", Gateway, body.gateway),
            ("customer", Customer, body.customer),
            ("tariff", Tariff, body.tariff),
        ):
            if session.get(model, value) is None:
                raise InvalidInputError(field, f"unknown {field} {value!r}")
        problem = unit_problem(latest_doc(session, body.tariff), body.service)
        if problem is not None:
            raise InvalidInputError("tariff", problem)
        if body.model is not None:
            check_model(body.model, body.service)
        sharers = sharer_pairs(body.sharers)
        stored = None if sharers is None else check_sharers(session, sharers)
        meter = Meter(
            id=body.id,
            gateway_id=body.gateway,
            customer_id=body.customer,
            tariff_id=body.tariff,
            service=body.service,
        )
        session.add(meter)
        session.flush()
        if stored is not None:
            set_sharers(session, body.id, stored)
        return meter_out(session, meter)

    return write_created(ctx.engine, work, who, ("meter", body.id), body.model_dump(mode="json"))


@router.patch("/{meter_id}", response_model=MeterOut)
def patch(meter_id: str, body: MeterPatch, ctx: ContextDep, who: Admin) -> MeterOut:
    now = datetime.now(UTC)

    def work(session: Session) -> MeterOut:
        change_payers(session, meter_id, body.given(), key_id=who.key_id, now=now)
        return meter_out(session, get_meter(session, meter_id))

    out = write(ctx.engine, work)
    ctx.runtime.control.after_postings([meter_id])  # the new payers' credit, now
    return out


@router.get("/{meter_id}/history", response_model=list[ChangeOut])
def meter_history(
    *,
    meter_id: str,
    session: SessionDep,
    _: Operator,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="event id cursor")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ChangeOut]:
    """The meter's changes (``meter_changed`` audit events), newest first."""
    get_meter(session, meter_id)
    rows = changes_of(session, METER_CHANGED, "meter", meter_id, before=before, limit=limit)
    return [change_out(e) for e in rows]


@router.post("/{meter_id}/supply-mix", status_code=201, response_model=SupplyMixOut)
def supply_mix(
    meter_id: str, body: SupplyMixIn, ctx: ContextDep, who: ProviderOrAdmin
) -> SupplyMixOut:
    provider = provider_of(who.account_id) if who.role is Role.PROVIDER else None
    shares = {name: Decimal(value) for name, value in body.shares.items()}

    def work(session: Session) -> SupplyMixOut:
        mix = add_supply_mix(session, meter_id, body.from_, body.to, shares, provider=provider,
                             key_id=who.key_id)  # fmt: skip
        return SupplyMixOut(id=mix.id, meter=mix.meter, pool=mix.pool, from_=mix.start,
                            to=mix.end, shares=mix.shares)  # fmt: skip

    return write(ctx.engine, work)


@router.get("", response_model=list[MeterOut])
def list_meters(
    session: SessionDep,
    response: Response,
    _: Operator,
    *,
    gateway: str | None = None,
    q: Annotated[str | None, Query(max_length=64)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> list[MeterOut]:
    """Meters in id order, ``limit`` from ``offset``; ``q`` keeps those whose id, customer or
    gateway contains it (any case). ``X-Total-Count`` says how many match in all."""
    stmt = select(Meter).where(*fleet.matching(q, gateway))
    rows = session.exec(stmt.order_by(col(Meter.id)).offset(offset).limit(limit)).all()
    response.headers["X-Total-Count"] = str(fleet.count_meters(session.connection(), q, gateway))
    pending = unapplied(session.connection(), [m.id for m in rows])
    return [meter_out(session, m, pending.get(m.id)) for m in rows]


@router.get("/{meter_id}", response_model=MeterOut)
def get(meter_id: str, session: SessionDep, _: Operator) -> MeterOut:
    pending = unapplied(session.connection(), [meter_id]).get(meter_id)
    out = meter_out(session, get_meter(session, meter_id), pending)
    bus = read_bus(session.connection(), meter_id)
    return out if bus is None else out.model_copy(update={"bus": BusOut.model_validate(bus)})


@router.get("/{meter_id}/consumption", response_model=list[ConsumptionDay])
def consumption(
    meter_id: str,
    session: SessionDep,
    _: Operator,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> list[ConsumptionDay]:
    """The meter's settled energy (Wh; litres for water) per UTC day, oldest first."""
    get_meter(session, meter_id)
    today = datetime.now(UTC).date()
    rows = fleet.consumption(session.connection(), meter_id, today - timedelta(days=days - 1),
                             today)  # fmt: skip
    return [ConsumptionDay(day=d, used=v) for d, v in rows]


@router.get("/{meter_id}/commands", response_model=list[CommandState])
def commands(
    meter_id: str,
    session: SessionDep,
    _: Operator,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[CommandState]:
    """The meter's commands, newest first, each with the states it went through."""
    get_meter(session, meter_id)
    out = []
    for row in history(session.connection(), meter_id, limit):
        steps = [CommandStep(status="queued", at=row["created_at"])]
        if row["sent_at"] is not None:
            steps.append(CommandStep(status="sent", at=row["sent_at"]))
        if row["done_at"] is not None:
            steps.append(CommandStep(status=row["status"], at=row["done_at"]))
        out.append(CommandState(id=row["id"], action=row["action"], status=row["status"],
                                detail=row["detail"], attempts=row["attempts"],
                                created_at=row["created_at"], expires_at=row["expires_at"],
                                history=steps))  # fmt: skip
    return out


@router.get("/{meter_id}/mismatches", response_model=list[MismatchOut])
def mismatches(
    meter_id: str,
    session: SessionDep,
    ctx: ContextDep,
    _: Operator,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[MismatchOut]:
    """Where the agent's pricing disagreed with the hub's, newest first."""
    get_meter(session, meter_id)
    rows = session.exec(
        select(UsageMismatch)
        .where(UsageMismatch.meter_id == meter_id)
        .order_by(col(UsageMismatch.id).desc())
        .limit(limit)
    ).all()
    cur = ctx.currency
    return [
        MismatchOut(
            seq=r.seq,
            at=r.at,
            hub_shares={p: major(int(v), cur) for p, v in sorted(r.hub_shares.items())},
            agent_shares={p: major(int(v), cur) for p, v in sorted(r.agent_shares.items())},
        )
        for r in rows
    ]


@router.post("/{meter_id}/disconnect", status_code=202, response_model=CommandOut)
def disconnect(meter_id: str, body: CommandIn, ctx: ContextDep, who: Operator) -> CommandOut:
    return _operator(ctx, who, meter_id, "disconnect", body.reason)


@router.post("/{meter_id}/reconnect", status_code=202, response_model=CommandOut)
def reconnect(meter_id: str, body: CommandIn, ctx: ContextDep, who: Operator) -> CommandOut:
    return _operator(ctx, who, meter_id, "reconnect", body.reason)


def _operator(
    ctx: HubContext, who: Principal, meter_id: str, action: str, reason: str
) -> CommandOut:
    done = operator_command(ctx.runtime, who, meter_id, action, reason)
    return CommandOut(
        command_id=done.command_id, meter=done.meter_id, action=done.action, status=done.status
    )
