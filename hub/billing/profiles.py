"""Profiles imports (contract section 6, ``POST /imports/profiles``): a second tier's customer
data, each field kept with its source (which provider, or ``admin``, and when).

A value that differs from what another source gave is not applied: it is reported in the
answer's ``conflicts`` and kept in ``profile_conflicts`` until an admin sets the field (an
admin's import always applies and resolves the field's open conflicts). A source may change
its own values. A provider's own account number is kept per provider (each has its own), so
two providers' numbers never conflict."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, insert, select, update
from sqlalchemy.engine import Connection

from hub.billing.rows import Report, RowError, check_rows, text
from hub.db import write_tx
from hub.models import Customer, ProfileConflict, ProfileField, table, utcnow

ADMIN = "admin"
DELIVERY = ("email", "paper", "both")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_POSTAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 \-]{0,15}$")
_fields = table(ProfileField)
_conflicts = table(ProfileConflict)
_customers = table(Customer)


def _short(limit: int) -> Callable[[str], bool]:
    return lambda v: 0 < len(v.strip()) <= limit


CHECKS: dict[str, tuple[Callable[[str], bool], str]] = {
    "address": (_short(500), "must be 1 to 500 characters"),
    "postal_code": (lambda v: bool(_POSTAL.match(v)), "must be a postal code"),
    "country": (lambda v: bool(_COUNTRY.match(v)), "must be an ISO 3166 alpha-2 code (GB)"),
    "email": (lambda v: bool(_EMAIL.match(v)), "must be an email address"),
    "delivery": (lambda v: v in DELIVERY, f"must be one of {', '.join(DELIVERY)}"),
    "service_class": (_short(64), "must be 1 to 64 characters"),
    "account_number": (_short(64), "must be 1 to 64 characters"),
    # "yes": no automatic offers (hub.insights)
    "offers_opt_out": (lambda v: v in ("yes", "no"), "must be yes or no"),
}
REQUIRED = ("address", "postal_code", "country", "delivery")


@dataclass(frozen=True)
class ProfileRow:
    customer: str
    values: dict[str, str]


def check_profile(row: Mapping[str, Any]) -> ProfileRow:
    customer = text(row, "customer", lambda v: bool(_ID.match(v)), "must be a customer id")
    unknown = sorted(set(row) - set(CHECKS) - {"customer"})
    if unknown:
        raise RowError(unknown[0], "unknown field")
    values: dict[str, str] = {}
    for name, (ok, what) in CHECKS.items():
        if row.get(name) in (None, ""):
            if name in REQUIRED:
                raise RowError(name, "is required")
            continue
        values[name] = text(row, name, ok, what).strip()
    return ProfileRow(customer, values)


def import_profiles(
    engine: Engine,
    rows: Sequence[Any],
    *,
    source: str,
    allowed: Callable[[Connection, str], bool] | None = None,
) -> dict[str, Any]:
    """Import ``rows`` from ``source`` (``admin`` or ``provider:<id>``); the contract's report."""
    report = Report()
    good = check_rows(rows, check_profile, report)
    scope = source.removeprefix("provider:") if source != ADMIN else ""
    with write_tx(engine) as conn:
        for n, row in good:
            known = conn.execute(select(_customers.c.id)
                                 .where(_customers.c.id == row.customer)).first()  # fmt: skip
            if known is None or (allowed is not None and not allowed(conn, row.customer)):
                report.reject(n, "customer", f"unknown customer {row.customer!r}")
                continue
            for name, value in row.values.items():
                slot = _Slot(row.customer, name, scope if name == "account_number" else "")
                conflict = _apply(conn, slot, value, source)
                if conflict is not None:
                    report.conflicts.append({"row": n, "field": name, **conflict})
            report.accepted += 1
    report.rejected.sort(key=lambda r: r["row"])
    return report.as_dict()


@dataclass(frozen=True)
class _Slot:
    customer: str
    name: str
    scope: str


def _apply(conn: Connection, slot: _Slot, value: str, source: str) -> dict[str, str] | None:
    """Set the field, or record and return the conflict."""
    customer, name, scope = slot.customer, slot.name, slot.scope
    key = and_(_fields.c.customer_id == customer, _fields.c.field == name, _fields.c.scope == scope)
    have = conn.execute(select(_fields.c.value, _fields.c.source).where(key)).first()
    now = utcnow()
    if have is None:
        row = {"customer_id": customer, "field": name, "scope": scope, "value": value,
               "source": source, "updated_at": now}  # fmt: skip
        conn.execute(insert(_fields).values(row))
        return None
    if have.value == value and have.source == source:
        return None
    if source in (ADMIN, have.source) or have.value == value:
        conn.execute(update(_fields).where(key).values(value=value, source=source, updated_at=now))
        if source == ADMIN:
            conn.execute(update(_conflicts).where(and_(
                _conflicts.c.customer_id == customer, _conflicts.c.field == name,
                _conflicts.c.resolved_at.is_(None))).values(resolved_at=now))  # fmt: skip
        return None
    conn.execute(insert(_conflicts).values(customer_id=customer, field=name, have=have.value,
                                           have_source=have.source, got=value, source=source,
                                           at=now))  # fmt: skip
    return {"have": have.value, "got": value, "have_source": have.source}


def profile_of(conn: Connection, customer: str) -> dict[str, Any]:
    """The customer's profile: each field with its value, source and time; per provider
    account numbers; open conflicts."""
    fields: dict[str, Any] = {}
    numbers: dict[str, Any] = {}
    for r in conn.execute(select(_fields).where(_fields.c.customer_id == customer)):
        entry = {"value": r.value, "source": r.source, "at": r.updated_at.isoformat()}
        if r.scope:
            numbers[r.scope] = entry
        else:
            fields[r.field] = entry
    open_conflicts = [
        {"id": int(c.id), "field": c.field, "have": c.have, "have_source": c.have_source,
         "got": c.got, "source": c.source, "at": c.at.isoformat()}
        for c in conn.execute(select(_conflicts).where(and_(
            _conflicts.c.customer_id == customer, _conflicts.c.resolved_at.is_(None)))
            .order_by(_conflicts.c.id))
    ]  # fmt: skip
    return {"customer": customer, "fields": fields, "account_numbers": numbers,
            "conflicts": open_conflicts}  # fmt: skip


def delivery_of(conn: Connection, customer: str) -> tuple[str, str | None]:
    """(delivery preference, email) from the profile; ``paper`` and None when not given."""
    rows: dict[str, str] = {
        str(r[0]): str(r[1])
        for r in conn.execute(select(_fields.c.field, _fields.c.value).where(and_(
            _fields.c.customer_id == customer, _fields.c.scope == "",
            _fields.c.field.in_(("delivery", "email")))))
    }  # fmt: skip
    return str(rows.get("delivery", "paper")), rows.get("email")
