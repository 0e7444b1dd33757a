"""Who pays a meter's charge (claims 10, 11, 13): one customer, or several by a split rule.

A meter is paid by its customer's prepaid account unless it has sharing users or a split rule:

- ``meter_customers`` rows: each user pays in proportion to its ``weight`` (the proportional
  cost of serving it, claim 11); a user with ``contributes`` false pays nothing (claim 13);
- ``meters.split_rule = {"accounts": {"<account id>": weight, ...}}``: portions of the fee are
  debited from several accounts, a sponsor's for instance (claim 10).

Portions are whole minor units that sum exactly to the debit (largest remainder, ties by id).
:func:`paying_account` is the primary payer (whose credit rules the meter follows);
:func:`contributors` are every payer of a positive share, whose combined credit credit control
enforces (``hub.control.combined``).

A meter whose customer or sharers were changed (``PATCH /meters/{id}``) has a payer history
(``meter_payers`` rows, :class:`PayerPeriod`): an interval is charged to the payers of the period
in force at its start (:func:`period_at`), the current ones being those of the newest period.

The rules are pure; :func:`load_sharers` and :func:`shared_meters` are the hub's only reads
of ``meter_customers``, :func:`load_periods` of ``meter_payers`` (in the caller's transaction);
:func:`paid_meters` lists the meters an account pays a share of.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, or_, select
from sqlalchemy.engine import Connection

from hub.ledger.bulk import select_in
from hub.models import Meter, MeterCustomer, MeterPayer, table
from protocol.apportion import split

_sharing = table(MeterCustomer)
_meters = table(Meter)
_periods = table(MeterPayer)
NULL = "null"  # a meter without a split rule holds JSON null (SQLAlchemy's JSON), not SQL NULL


class SplitRuleError(ValueError):
    """A split rule that names no paying account or has a bad weight."""


@dataclass(frozen=True)
class Sharer:
    account: str
    weight: int = 1
    contributes: bool = True


@dataclass(frozen=True)
class PayerPeriod:
    """Who pays a meter from ``start`` on: its customer and its sharers (none: the customer)."""

    start: datetime
    customer: str
    sharers: tuple[Sharer, ...] = ()


def sharers_of(rows: Iterable[Mapping[str, Any]] | None) -> tuple[Sharer, ...]:
    """Stored ``[{"customer", "weight"}]`` as sharers in customer order (weight 0: does not
    contribute)."""
    found = [Sharer(str(r["customer"]), int(r["weight"]), int(r["weight"]) > 0)
             for r in rows or ()]  # fmt: skip
    return tuple(sorted(found, key=lambda s: s.account))


def period_at(periods: Sequence[PayerPeriod], moment: datetime) -> PayerPeriod:
    """The period in force at ``moment`` (``periods`` in start order, not empty): the newest
    that started at or before it, or the first for a moment before them all."""
    index = bisect.bisect_right([p.start for p in periods], moment) - 1
    return periods[max(index, 0)]


def payer_weights(
    customer: str | None, sharers: tuple[Sharer, ...], rule: Mapping[str, Any] | None
) -> dict[str, int]:
    """The paying accounts and their integer weights for one meter."""
    if rule and rule.get("accounts"):
        accounts = rule["accounts"]
        if not isinstance(accounts, Mapping):
            raise SplitRuleError("split_rule.accounts must map account ids to weights")
        weights: dict[str, int] = {}
        for account, weight in accounts.items():
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
                raise SplitRuleError(f"split_rule weight for {account!r} must be an integer >= 0")
            weights[str(account)] = weight
    elif sharers:
        weights = {s.account: (s.weight if s.contributes else 0) for s in sharers}
        if any(w < 0 for w in weights.values()):
            raise SplitRuleError("a sharing weight cannot be negative")
    elif customer:
        weights = {customer: 1}
    else:
        raise SplitRuleError("the meter has no customer and no split rule")
    if sum(weights.values()) <= 0:
        raise SplitRuleError("at least one account must contribute")
    return weights


def portions(debit: int, weights: Mapping[str, int]) -> dict[str, int]:
    """``debit`` split by ``weights``: non-zero portions only, summing exactly to ``debit``."""
    if debit == 0:
        return {}
    if len(weights) == 1 and debit > 0:  # one payer (the usual meter) pays it all
        ((account, weight),) = weights.items()
        if weight > 0:
            return {account: debit}
    return {a: v for a, v in split(debit, weights).items() if v}


def paying_account(customer: str | None, weights: Mapping[str, int]) -> str:
    """The account whose balance the meter enforces: its customer's if that pays, else the
    account with the largest weight (ties by id)."""
    if customer is not None and weights.get(customer, 0) > 0:
        return customer
    return min(weights, key=lambda a: (-weights[a], a))


def contributors(weights: Mapping[str, int]) -> list[str]:
    """The accounts that pay a positive share, in id order (a weight of 0 pays nothing)."""
    return sorted(a for a, w in weights.items() if w > 0)


def load_sharers(conn: Connection, meter_ids: Iterable[str]) -> dict[str, tuple[Sharer, ...]]:
    """The sharing users of each meter (``meter_customers`` rows), in customer id order; a
    meter without any is left out."""
    found: dict[str, list[Sharer]] = {}
    cols = ("meter_id", "customer_id", "weight", "contributes")
    rows = select_in(conn, _sharing, cols, "meter_id", sorted(set(meter_ids)),
                     order_by="customer_id")  # fmt: skip
    for meter_id, customer, weight, contributes in rows:
        found.setdefault(meter_id, []).append(Sharer(customer, int(weight), bool(contributes)))
    return {m: tuple(v) for m, v in found.items()}


def load_periods(conn: Connection, meter_ids: Iterable[str]) -> dict[str, tuple[PayerPeriod, ...]]:
    """Each meter's payer history in start order; a meter without one is left out."""
    found: dict[str, list[PayerPeriod]] = {}
    cols = ("meter_id", "valid_from", "customer_id", "sharers", "id")
    rows = select_in(conn, _periods, cols, "meter_id", sorted(set(meter_ids)))
    for meter_id, start, customer, sharers, _ in sorted(rows, key=lambda r: (r[0], r[1], r[4])):
        found.setdefault(meter_id, []).append(PayerPeriod(start, customer, sharers_of(sharers)))
    return {m: tuple(v) for m, v in found.items()}


def shared_meters(conn: Connection, account_ids: Iterable[str]) -> set[str]:
    """The meters that any of ``account_ids`` shares as a sharing user."""
    rows = select_in(conn, _sharing, ("meter_id",), "customer_id", sorted(set(account_ids)))
    return {meter_id for (meter_id,) in rows}


def has_split_rule(column: Any) -> ColumnElement[bool]:
    """``meters.split_rule`` holds a rule: neither SQL NULL nor the JSON ``null`` SQLAlchemy
    stores for a meter without one (so the rule readers do not read every meter)."""
    return and_(column.is_not(None), cast(column, String) != NULL)


def paid_meters(conn: Connection, account_id: str) -> list[str]:
    """The meters ``account_id`` pays a positive share of, in id order: its own, the shared
    meters it contributes to and those whose split rule names it (a meter whose payers cannot
    be worked out is left out)."""
    shared = shared_meters(conn, [account_id])
    rows = conn.execute(
        select(_meters.c.id, _meters.c.customer_id, _meters.c.split_rule).where(
            or_(
                _meters.c.customer_id == account_id,
                _meters.c.id.in_(sorted(shared)),
                has_split_rule(_meters.c.split_rule),
            )
        )
    ).all()
    sharers = load_sharers(conn, [r.id for r in rows])
    paid = []
    for row in rows:
        try:
            weights = payer_weights(row.customer_id, sharers.get(row.id, ()), row.split_rule)
        except SplitRuleError:
            continue
        if weights.get(account_id, 0) > 0:
            paid.append(row.id)
    return sorted(paid)
