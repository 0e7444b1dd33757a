"""POST /tariffs (admin): a tariff as ``protocol.tariff.Tariff``, stored as its version 1."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from sqlmodel import Session, col, select

from hub.api.deps import Admin, ContextDep, Operator, SessionDep, write
from hub.api.schemas import TariffIn, TariffOut
from hub.errors import ConflictError, InvalidInputError, NotFoundError
from hub.models import Provider, Tariff, TariffVersion, utcnow
from protocol.tariff import Tariff as TariffDoc

router = APIRouter(prefix="/tariffs", tags=["tariffs"])


def tariff_out(session: Session, tariff_id: str) -> TariffOut:
    tariff = session.get(Tariff, tariff_id)
    if tariff is None:
        raise NotFoundError("tariff", tariff_id)
    version = session.exec(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff_id)
        .order_by(col(TariffVersion.version).desc())
    ).first()
    assert version is not None
    doc: dict[str, Any] = json.loads(version.document)
    return TariffOut(
        id=tariff.id,
        name=tariff.name,
        currency=tariff.currency,
        version=version.version,
        valid_from=version.valid_from,
        components=list(doc.get("components", [])),
    )


@router.post("", status_code=201, response_model=TariffOut)
def create(body: TariffIn, ctx: ContextDep, _: Admin) -> TariffOut:
    if body.currency != ctx.currency:
        raise InvalidInputError("currency", f"this hub settles in {ctx.currency}")
    doc = TariffDoc.model_validate(body.model_dump(exclude={"name", "valid_from"}) | {"version": 1})

    def work(session: Session) -> TariffOut:
        if session.get(Tariff, body.id) is not None:
            raise ConflictError(f"tariff {body.id!r} already exists")
        for index, component in enumerate(doc.components):
            if session.get(Provider, component.provider) is None:
                raise InvalidInputError(
                    f"components.{index}.provider", f"unknown provider {component.provider!r}"
                )
        session.add(Tariff(id=body.id, currency=body.currency, name=body.name))
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

    return write(ctx.engine, work)


@router.get("/{tariff_id}", response_model=TariffOut)
def get(tariff_id: str, session: SessionDep, _: Operator) -> TariffOut:
    return tariff_out(session, tariff_id)
