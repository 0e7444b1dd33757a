"""Provider selection's configuration (issue 15 item 3, contract section 5): a meter's
``selection`` checked, service-level agreements (``POST /slas``) and providers' priority fees
(``POST /providers``). What the ingest planner does with them: ``hub.rating.pricing``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlmodel import Session, col, select

from hub.errors import InvalidInputError
from hub.ledger import ensure_account, platform_account_id
from hub.models import AccountKind, Customer, Provider, Sla, Tariff, TariffVersion
from hub.rating.pricing import POLICIES
from protocol.tariff import Tariff as TariffDoc
from protocol.tariff import unit_problem


@dataclass(frozen=True)
class SelectionSpec:
    policy: str
    tariffs: tuple[str, ...]


def latest_version(session: Session, tariff_id: str) -> TariffVersion:
    """The tariff's newest version (the tariff must exist: it is created with version 1)."""
    version = session.exec(
        select(TariffVersion)
        .where(TariffVersion.tariff_id == tariff_id)
        .order_by(col(TariffVersion.version).desc())
    ).first()
    assert version is not None
    return version


def newest_doc(session: Session, tariff_id: str) -> TariffDoc:
    """The tariff's newest version as a document (the tariff must exist)."""
    return TariffDoc.model_validate_json(latest_version(session, tariff_id).document)


def check_selection(
    session: Session, policy: str, tariffs: Sequence[str], service: str
) -> SelectionSpec:
    """422 naming the field unless ``policy`` is known and ``tariffs`` are existing tariffs of
    one currency, time zone and unit that price ``service``, no provider in two of them."""
    if policy not in POLICIES:
        raise InvalidInputError("selection.policy", f"unknown policy {policy!r}; one of {POLICIES}")
    ids = tuple(dict.fromkeys(tariffs))
    if not ids:
        raise InvalidInputError("selection.tariffs", "name at least one tariff")
    docs: list[TariffDoc] = []
    for tariff_id in ids:
        if session.get(Tariff, tariff_id) is None:
            raise InvalidInputError("selection.tariffs", f"unknown tariff {tariff_id!r}")
        docs.append(newest_doc(session, tariff_id))
    for what, values in (("currencies", {d.currency for d in docs}),
                         ("time zones", {d.timezone for d in docs}),
                         ("units", {d.unit or "" for d in docs} - {""})):  # fmt: skip
        if len(values) > 1:
            raise InvalidInputError("selection.tariffs", f"mixed {what}: {sorted(values)}")
    owner: dict[str, str] = {}
    for doc in docs:
        problem = unit_problem(doc, service)
        if problem is not None:
            raise InvalidInputError("selection.tariffs", problem)
        for provider in doc.providers:
            if owner.setdefault(provider, doc.id) != doc.id:
                raise InvalidInputError(
                    "selection.tariffs",
                    f"provider {provider!r} offers in {owner[provider]!r} and {doc.id!r}",
                )
    return SelectionSpec(policy, ids)


def create_sla(
    session: Session, customer: str, provider: str, start: datetime, end: datetime | None
) -> Sla:
    """Record an agreement (in the caller's transaction); 422 naming the field if invalid."""
    if session.get(Customer, customer) is None:
        raise InvalidInputError("customer", f"unknown customer {customer!r}")
    if session.get(Provider, provider) is None:
        raise InvalidInputError("provider", f"unknown provider {provider!r}")
    if end is not None and end <= start:
        raise InvalidInputError("to", "must be after from")
    sla = Sla(customer_id=customer, provider_id=provider, start=start, end=end)
    session.add(sla)
    session.flush()
    return sla


def set_priority_fee(session: Session, provider_id: str, fee: Decimal, currency: str) -> None:
    """The provider pays ``fee`` per kWh to be preferred; fees are posted to the platform's
    account, opened here if need be."""
    provider = session.get(Provider, provider_id)
    assert provider is not None
    provider.priority_fee = str(fee)
    session.add(provider)
    ensure_account(session, platform_account_id(currency), name="Platform",
                   kind=AccountKind.PLATFORM, currency=currency)  # fmt: skip
    session.flush()
