"""What credit control reads and keeps in the database, inside the caller's transaction.

Per meter, the rules' memory (``protocol.rules.Memory``: prompted thresholds, exhaustion time,
friendly-period start, relay as the rules last set it) is kept in the meter's customer row,
``customers.flags["credit_memory"][meter_id]``; the customer row is locked (``FOR UPDATE`` on
PostgreSQL; SQLite holds the write lock from ``BEGIN IMMEDIATE``) before it is read, so two
evaluations of one customer are serialised and never lose an update.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from hub.billing.bill import POSTPAID, billing_of
from hub.control.credit_state import credit_rules
from hub.control.rules import CustomerRules, Memory, Policy, rest_floor
from hub.models import Account, Customer, Gateway, Meter, table
from hub.rating.payers import (
    Sharer,
    SplitRuleError,
    contributors,
    load_sharers,
    payer_weights,
    paying_account,
)
from hub.rating.tariffs import load_histories
from protocol.messages import CreditRules

log = logging.getLogger(__name__)

MEMORY = "credit_memory"
CHUNK = 500  # ids per IN (...) list
accounts = table(Account)
customers = table(Customer)
meters = table(Meter)
_gateways = table(Gateway)


@dataclass
class MeterView:
    id: str
    gateway_id: str
    command_key: str
    customer_id: str  # whose row keeps the memory
    account_id: str  # the primary payer: whose rules the meter follows
    relay: str  # as the agent last reported it: on / off / unknown
    zone: ZoneInfo
    memory: Memory
    stored: Memory  # as read: written back only when the rules changed it
    payers: tuple[str, ...] = ()  # every contributing payer, in id order (hub.control.combined)


@dataclass
class AccountCtx:
    """One paying account and its customer, locked for this transaction."""

    id: str
    currency: str
    balance: int
    floor: int | None
    rules: CreditRules
    policy: Policy
    alternate_id: str | None
    meters: list[MeterView] = field(default_factory=list)  # the meters it pays a share of


def meter_views(conn: Connection, meter_ids: Iterable[str], now: datetime) -> list[MeterView]:
    """The meters (unknown ones, and ones without a customer or paying account, skipped)."""
    wanted = sorted(set(meter_ids))
    if not wanted:
        return []
    rows: list[Any] = []
    for i in range(0, len(wanted), CHUNK):
        rows += conn.execute(
            select(meters.c.id, meters.c.gateway_id, meters.c.customer_id, meters.c.tariff_id,
                   meters.c.relay, meters.c.timezone, meters.c.split_rule,
                   _gateways.c.command_key)
            .join(_gateways, _gateways.c.id == meters.c.gateway_id)
            .where(meters.c.id.in_(wanted[i : i + CHUNK]))
        ).all()  # fmt: skip
    owners = sorted({r.customer_id for r in rows if r.customer_id})
    lock_customers(conn, owners)
    flags = _flags(conn, owners)
    shared = load_sharers(conn, wanted)
    zones: dict[tuple[str | None, str | None], ZoneInfo] = {}
    out = []
    for r in rows:
        if r.customer_id is None:
            continue
        try:
            account_id, payers = _paying(r.customer_id, shared.get(r.id, ()), r.split_rule)
        except LookupError as exc:
            log.warning("credit control skips %s: %s", r.id, exc)
            continue
        memory = load_memory(flags.get(r.customer_id), r.id)
        where = (r.timezone, r.tariff_id)
        if where not in zones:
            zones[where] = _zone(conn, r.timezone, r.tariff_id, now)
        out.append(MeterView(r.id, r.gateway_id, r.command_key, r.customer_id, account_id,
                             str(r.relay), zones[where], memory, memory, payers))  # fmt: skip
    return out


def account_ctx(conn: Connection, account_id: str) -> AccountCtx | None:
    return account_ctxs(conn, [account_id]).get(account_id)


def account_ctxs(conn: Connection, account_ids: Iterable[str]) -> dict[str, AccountCtx]:
    """The accounts ``account_ids`` with their customers' rules, each row locked (in id order:
    the accounts, then their customers), a few queries for any number of accounts."""
    ids = sorted(set(account_ids))
    rows: list[Any] = []
    custs: dict[str, Any] = {}
    for i in range(0, len(ids), CHUNK):
        rows += conn.execute(
            select(accounts.c.id, accounts.c.currency, accounts.c.balance, accounts.c.floor)
            .where(accounts.c.id.in_(ids[i : i + CHUNK])).order_by(accounts.c.id)
            .with_for_update()
        ).all()  # fmt: skip
    for i in range(0, len(ids), CHUNK):
        for found in conn.execute(
            select(customers.c.id, customers.c.flags, customers.c.protected,
                   customers.c.alternate_account_id)
            .where(customers.c.id.in_(ids[i : i + CHUNK])).order_by(customers.c.id)
            .with_for_update()
        ):  # fmt: skip
            custs[found.id] = found
    out: dict[str, AccountCtx] = {}
    for row in rows:
        cust = custs.get(row.id)
        flags = cust.flags if cust is not None else None
        rules = credit_rules(flags, bool(cust is not None and cust.protected))
        alternate = cust.alternate_account_id if cust is not None else None
        if billing_of(flags) == POSTPAID:
            alternate = None  # a receivable: nothing to draw, no headroom to lower the rules by
        out[row.id] = AccountCtx(row.id, row.currency, int(row.balance), row.floor, rules,
                                 Policy.from_flags(flags), alternate)  # fmt: skip
    return out


def refresh_balance(conn: Connection, ctx: AccountCtx) -> None:
    row = conn.execute(
        select(accounts.c.balance, accounts.c.floor).where(accounts.c.id == ctx.id)
    ).one()
    ctx.balance, ctx.floor = int(row.balance), row.floor


def lock_customers(conn: Connection, ids: list[str]) -> None:
    if ids and conn.dialect.name == "postgresql":
        conn.execute(
            select(customers.c.id).where(customers.c.id.in_(ids)).order_by(customers.c.id)
            .with_for_update()
        ).all()  # fmt: skip


def load_memory(flags: Mapping[str, Any] | None, meter_id: str) -> Memory:
    raw = ((flags or {}).get(MEMORY) or {}).get(meter_id)
    if not raw:
        return Memory()
    try:
        return Memory.model_validate(raw)
    except ValueError:
        log.warning("credit memory of %s unreadable; starting afresh", meter_id)
        return Memory()


def stored_rest_floor(
    meter_id: str, flags: Mapping[str, Any] | None, protected: bool
) -> int | None:
    """``rules.rest_floor`` of the meter's stored memory and its customer's rules (``flags``):
    the balance above which it is at rest. None also when no memory of it is stored there (never
    evaluated, or another customer keeps it)."""
    if not ((flags or {}).get(MEMORY) or {}).get(meter_id):
        return None
    return rest_floor(credit_rules(flags, protected), load_memory(flags, meter_id))


def save_memories(conn: Connection, views: Iterable[MeterView]) -> None:
    """Write back the memory of each meter into its customer's flags (one UPDATE each)."""
    by_customer: dict[str, list[MeterView]] = {}
    for view in views:
        if view.memory != view.stored:
            by_customer.setdefault(view.customer_id, []).append(view)
    if not by_customer:
        return
    current = _flags(conn, sorted(by_customer))
    for customer_id, group in by_customer.items():
        flags = dict(current.get(customer_id) or {})
        memory = dict(flags.get(MEMORY) or {})
        for view in group:
            memory[view.id] = view.memory.model_dump(mode="json")
            view.stored = view.memory
        flags[MEMORY] = memory
        conn.execute(update(customers).where(customers.c.id == customer_id).values(flags=flags))


def set_credit_rules(conn: Connection, customer_id: str, rules: CustomerRules) -> None:
    """Store a customer's credit rules (protocol part and hub part) in its flags."""
    proto, policy = rules.split()
    flags = _flags(conn, [customer_id]).get(customer_id, {})
    flags.update({"credit_rules": proto, "credit_policy": policy})
    conn.execute(update(customers).where(customers.c.id == customer_id).values(flags=flags))


def _flags(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids:
        return {}
    rows = conn.execute(select(customers.c.id, customers.c.flags).where(customers.c.id.in_(ids)))
    return {r.id: dict(r.flags or {}) for r in rows}


def _paying(
    customer: str, sharers: tuple[Sharer, ...], split_rule: Any
) -> tuple[str, tuple[str, ...]]:
    """The primary payer and every contributing payer (in id order)."""
    if not sharers and not split_rule:
        return customer, (customer,)
    try:
        weights = payer_weights(customer, sharers, split_rule)
    except SplitRuleError as exc:
        raise LookupError(str(exc)) from exc
    return paying_account(customer, weights), tuple(contributors(weights))


def _zone(conn: Connection, name: str | None, tariff_id: str | None, now: datetime) -> ZoneInfo:
    """The meter's time zone; a meter left at the default UTC takes its tariff's zone (the one
    the agent uses offline), so hub and agent see the same friendly hours."""
    if name and name != "UTC":
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown time zone %r; using UTC", name)
    if tariff_id is not None:
        history = load_histories(conn, [tariff_id]).get(tariff_id)
        if history is not None:
            return history.at(now).zone
    return ZoneInfo("UTC")
