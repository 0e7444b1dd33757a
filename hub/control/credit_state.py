"""What the hub tells a gateway about a meter's credit, and the signed ``credit`` commands.

``credit_state`` reads one meter's paying balance, its rating state (carry, highest contiguous
seq), the tariff version in force and the credit rules, and builds a ``CreditState``. Rules
come from the paying customer's ``flags["credit_rules"]`` (fields of ``CreditRules``) and its
``protected`` flag; anything not given takes the ``CreditRules`` default. A meter paid by
several accounts is sent its payers' combined balance and rules (``hub.control.combined``).

The ``queue_*`` functions write the signed ``credit`` commands to the durable command table
(``hub.commands.store``), from which the dispatcher publishes them until the agent applies them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from hub.billing.bill import POSTPAID, billing_of
from hub.commands.store import enqueue
from hub.control.combined import PayerCredit, combine
from hub.control.commands import DEFAULT_TTL, credit_command
from hub.control.rules import Policy
from hub.db import write_tx
from hub.ledger.bulk import any_of
from hub.models import Account, Customer, Gateway, Meter, MeterCarry, table
from hub.rating.payers import (
    SplitRuleError,
    contributors,
    load_sharers,
    payer_weights,
    paying_account,
)
from hub.rating.pricing import Choice, Step, choose
from hub.rating.pricing_store import load_market, load_pricing, selecting
from hub.rating.selection import SelectionError
from hub.rating.state import MeterState
from hub.rating.tariffs import load_histories
from hub.tokens.store import setup as token_setup
from protocol.apportion import dump_carry
from protocol.errors import ProtocolError
from protocol.messages import (
    MAX_MONEY,
    CreditRules,
    CreditState,
    ProviderChoice,
    TokenSetup,
    validate,
)
from protocol.tariff import Tariff

log = logging.getLogger(__name__)

_meters = table(Meter)
_gateways = table(Gateway)
_customers = table(Customer)
_accounts = table(Account)
_carry = table(MeterCarry)


@dataclass(frozen=True)
class MeterCredit:
    meter_id: str
    gateway_id: str
    command_key: str
    account_id: str
    state: CreditState


def credit_rules(
    flags: Mapping[str, Any] | None, protected: bool, alternate_available: int = 0
) -> CreditRules:
    """The customer's rules (``flags["credit_rules"]``), defaults where absent or invalid.

    ``alternate_available`` is what the hub can still draw from the customer's alternate account
    (:func:`alternate_headroom`): sent to the agent so it does not cut supply before the hub draws.
    """
    given = dict((flags or {}).get("credit_rules") or {})
    given["protected"] = bool(protected or given.get("protected", False))
    given["alternate_available"] = max(0, alternate_available)
    if billing_of(flags) == POSTPAID:
        # consumes against a receivable, billed monthly: never cut off for credit, here or
        # by the agent (it lets the balance run this far below zero)
        given["alternate_available"] = MAX_MONEY
    try:
        return validate(given, CreditRules)
    except ProtocolError as exc:
        log.warning("ignoring invalid credit rules (%s); using defaults", exc.reason)
        return CreditRules(protected=given["protected"])


def alternate_headroom(conn: Connection, customer_ids: Iterable[str]) -> dict[str, int]:
    """Per customer with a usable alternate account: what the hub can still draw from it.

    That is the alternate account's balance above its floor (an account without a floor counts
    from zero, so the agent never relies on more than the account holds); a customer whose
    policy never draws has none.
    """
    rows = conn.execute(
        select(_customers.c.id, _customers.c.flags, _customers.c.alternate_account_id).where(
            any_of(conn, _customers.c.id, customer_ids),
            _customers.c.alternate_account_id.is_not(None),
        )
    ).all()
    if not rows:
        return {}
    alternates = {
        r.id: r
        for r in conn.execute(
            select(_accounts.c.id, _accounts.c.balance, _accounts.c.floor).where(
                any_of(conn, _accounts.c.id, {r.alternate_account_id for r in rows})
            )
        )
    }
    headroom: dict[str, int] = {}
    for row in rows:
        alt = alternates.get(row.alternate_account_id)
        if alt is not None and Policy.from_flags(row.flags).alternate_draw is not None:
            headroom[row.id] = max(0, int(alt.balance) - max(0, int(alt.floor or 0)))
    return headroom


def payer_credits(
    conn: Connection, account_ids: Iterable[str], balances: Mapping[str, int] | None = None
) -> dict[str, PayerCredit]:
    """Each existing account's balance (``balances`` where given, else read) and credit rules
    (its customer's, with its alternate headroom; defaults for an account without a customer),
    in account id order."""
    ids = sorted(set(account_ids))
    found = {a: int(b) for a, b in conn.execute(
        select(_accounts.c.id, _accounts.c.balance).where(_accounts.c.id.in_(ids)))}  # fmt: skip
    found.update({a: b for a, b in (balances or {}).items() if a in found})
    custs = {r.id: r for r in conn.execute(
        select(_customers.c.id, _customers.c.flags, _customers.c.protected)
        .where(_customers.c.id.in_(ids)))}  # fmt: skip
    headroom = alternate_headroom(conn, ids)
    out: dict[str, PayerCredit] = {}
    for account in sorted(found):
        cust = custs.get(account)
        rules = credit_rules(cust.flags if cust else None, bool(cust and cust.protected),
                             headroom.get(account, 0))  # fmt: skip
        out[account] = PayerCredit(account, found[account], rules)
    return out


def build_state(
    tariff: Tariff, balance: int, state: MeterState, rules: CreditRules,
    tokens: TokenSetup | None = None, *, selection: Mapping[str, Any] | None = None,
) -> CreditState:  # fmt: skip
    """``tokens``: read in the transaction that read ``balance`` (``hub.tokens.store.setup``),
    so the balance holds exactly the tokens it lists as settled. ``selection``: the choice
    ``tariff`` amounts to, for a meter priced by a provider selection."""
    return CreditState(
        balance=balance,
        as_of_seq=state.seq,
        tariff=tariff,
        rules=rules,
        carry=dump_carry(state.carry),
        tokens=tokens,
        selection=None if selection is None else validate(dict(selection), ProviderChoice),
    )


def credit_state(conn: Connection, meter_id: str, now: datetime | None = None) -> MeterCredit:
    """The credit state of one meter now; LookupError when it cannot be built (no such meter,
    no tariff, no paying account)."""
    meter = conn.execute(select(_meters).where(_meters.c.id == meter_id)).first()
    if meter is None:
        raise LookupError(f"unknown meter {meter_id!r}")
    if meter.tariff_id is None:
        raise LookupError(f"meter {meter_id!r} has no tariff")
    key = conn.execute(
        select(_gateways.c.command_key).where(_gateways.c.id == meter.gateway_id)
    ).scalar_one()
    sharers = load_sharers(conn, [meter_id]).get(meter_id, ())
    try:
        weights = payer_weights(meter.customer_id, sharers, meter.split_rule)
    except SplitRuleError as exc:
        raise LookupError(f"meter {meter_id!r}: {exc}") from exc
    account_id = paying_account(meter.customer_id, weights)
    payers = payer_credits(conn, contributors(weights))
    missing = sorted(set(contributors(weights)) - set(payers))
    if missing:
        raise LookupError(f"meter {meter_id!r}: unknown paying account(s) {missing}")
    balance, rules = combine(payers[account_id].rules, list(payers.values()))
    choice = pricing_now(conn, meter_id, meter.tariff_id, meter.customer_id,
                         now or datetime.now(UTC))  # fmt: skip
    text = conn.execute(select(_carry.c.state).where(_carry.c.meter_id == meter_id)).scalar()
    tokens = token_setup(conn, meter_id, key)
    state = build_state(choice.tariff, balance, MeterState.load(text), rules, tokens,
                        selection=choice.meta)  # fmt: skip
    return MeterCredit(meter_id, meter.gateway_id, key, account_id, state)


def pricing_now(
    conn: Connection, meter_id: str, tariff_id: str, customer: str | None, now: datetime
) -> Choice:
    """How the meter is priced at ``now``: the version of its tariff in force, or the
    providers its selection chooses (``hub.rating.pricing``, as the ingest planner does)."""
    pricing = load_pricing(conn, [meter_id]).get(meter_id)
    step = Step(now, tariff_id) if pricing is None else pricing.at(now)
    histories = load_histories(conn, step.tariff_ids)
    missing = [t for t in step.tariff_ids if t not in histories]
    if missing:
        raise LookupError(f"tariff {missing[0]!r} has no version")
    versions = [histories[t].at(now) for t in step.tariff_ids]
    if step.policy is None:
        return Choice(versions[0])
    currency = versions[0].currency
    market = load_market(conn, [customer] if customer else [], currency)
    try:
        return choose(step, versions, market, customer, (now, now, 0))
    except SelectionError as exc:
        raise LookupError(f"meter {meter_id!r}: {exc}") from exc


def credit_command_for(
    credit: MeterCredit, *, ttl: timedelta = DEFAULT_TTL, reason: str = "credit state"
) -> dict[str, Any]:
    """The signed ``credit`` command carrying ``credit``'s state."""
    return credit_command(credit.command_key, credit.meter_id, credit.state, reason=reason,
                          ttl=ttl)  # fmt: skip


def queue_credit_states(
    engine: Engine, meter_ids: Iterable[str], *, reason: str = "credit state",
    ttl: timedelta = DEFAULT_TTL,
) -> dict[str, str]:  # fmt: skip
    """Queue these meters' credit states now (after a top-up, say) in the durable command
    table, in one transaction; the command id per meter (a meter with no state to send is
    logged and left out)."""
    with write_tx(engine) as conn:
        return queue_credit_states_in(conn, meter_ids, reason=reason, ttl=ttl)


def queue_credit_states_in(
    conn: Connection, meter_ids: Iterable[str], *, reason: str = "credit state",
    ttl: timedelta = DEFAULT_TTL,
) -> dict[str, str]:  # fmt: skip
    """``queue_credit_states`` in the caller's transaction (the one that changed what the
    states carry: a customer's credit rules or protection, say)."""
    queued: dict[str, str] = {}
    for meter_id in sorted(set(meter_ids)):
        try:
            credit = credit_state(conn, meter_id)
        except LookupError as exc:
            log.warning("no credit state for %s: %s", meter_id, exc)
            continue
        command = credit_command_for(credit, ttl=ttl, reason=reason)
        queued[meter_id] = enqueue(conn, credit.gateway_id, command)
    return queued


def queue_tariff_update(engine: Engine, tariff_id: str, *, ttl: timedelta = DEFAULT_TTL) -> int:
    """Queue for every meter on ``tariff_id`` its credit state (with the version now in force),
    in a transaction of its own; returns how many commands were queued."""
    with write_tx(engine) as conn:
        return queue_tariff_update_in(conn, tariff_id, ttl=ttl)


def queue_tariff_update_in(
    conn: Connection, tariff_id: str, *, ttl: timedelta = DEFAULT_TTL
) -> int:
    """``queue_tariff_update`` in the caller's transaction (the one that wrote the version):
    for the meters on the tariff and those whose selection has it among its candidates."""
    queued = 0
    meter_ids = set(
        conn.execute(select(_meters.c.id).where(_meters.c.tariff_id == tariff_id)).scalars()
    )
    meter_ids |= selecting(conn, tariff_id)
    for meter_id in sorted(meter_ids):
        try:
            credit = credit_state(conn, meter_id)
        except LookupError as exc:
            log.warning("no credit state for %s: %s", meter_id, exc)
            continue
        enqueue(conn, credit.gateway_id,
                credit_command_for(credit, ttl=ttl, reason="tariff update"))  # fmt: skip
        queued += 1
    return queued
