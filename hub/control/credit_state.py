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
from hub.commands.store import enqueue_many
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
from hub.rating.pricing import Choice, Market, Step, choose
from hub.rating.pricing_store import load_market, load_pricing, selecting
from hub.rating.selection import SelectionError
from hub.rating.state import MeterState
from hub.rating.tariffs import TariffHistory, load_histories
from hub.tokens.store import setups as token_setups
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
FANOUT_CHUNK = 500  # meters read at once (SQLite takes at most 32,766 values a statement)


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
    """``tokens``: read in the transaction that read ``balance`` (``hub.tokens.store.setups``),
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
    credits, problems = credit_states(conn, [meter_id], now)
    if meter_id in problems:
        raise LookupError(problems[meter_id])
    return credits[meter_id]


def credit_states(
    conn: Connection, meter_ids: Iterable[str], now: datetime | None = None
) -> tuple[dict[str, MeterCredit], dict[str, str]]:
    """The credit states of ``meter_ids`` now, read ``FANOUT_CHUNK`` meters at a time with one
    query per kind of data (a tariff update reaches every meter on the tariff); and for each
    meter whose state cannot be built (no such meter, no tariff, no paying account), why."""
    at = now or datetime.now(UTC)
    credits: dict[str, MeterCredit] = {}
    problems: dict[str, str] = {}
    ids = sorted(set(meter_ids))
    for i in range(0, len(ids), FANOUT_CHUNK):
        _credit_chunk(conn, ids[i : i + FANOUT_CHUNK], at, credits, problems)
    return credits, problems


def _credit_chunk(
    conn: Connection, ids: list[str], at: datetime, credits: dict[str, MeterCredit],
    problems: dict[str, str],
) -> None:  # fmt: skip
    rows = {r.id: r for r in conn.execute(select(_meters).where(_meters.c.id.in_(ids)))}
    for m in ids:
        if m not in rows:
            problems[m] = f"unknown meter {m!r}"
        elif rows[m].tariff_id is None:
            problems[m] = f"meter {m!r} has no tariff"
    live = [m for m in ids if m not in problems]
    keys: dict[str, str] = dict(conn.execute(
        select(_gateways.c.id, _gateways.c.command_key)
        .where(_gateways.c.id.in_({rows[m].gateway_id for m in live}))
    ).all())  # fmt: skip
    sharers = load_sharers(conn, live)
    weights = {}
    for m in live:
        try:
            weights[m] = payer_weights(rows[m].customer_id, sharers.get(m, ()), rows[m].split_rule)
        except SplitRuleError as exc:
            problems[m] = f"meter {m!r}: {exc}"
    payers = payer_credits(conn, {a for w in weights.values() for a in contributors(w)})
    pricing = load_pricing(conn, weights)
    steps = {m: Step(at, rows[m].tariff_id) if m not in pricing else pricing[m].at(at)
             for m in weights}  # fmt: skip
    histories = load_histories(conn, {t for step in steps.values() for t in step.tariff_ids})
    markets = _Markets(conn, [rows[m].customer_id for m in weights if steps[m].policy])
    carries = dict(conn.execute(
        select(_carry.c.meter_id, _carry.c.state).where(_carry.c.meter_id.in_(list(weights)))
    ).all())  # fmt: skip
    tokens = token_setups(conn, {m: keys.get(rows[m].gateway_id, "") for m in weights})
    for m, w in weights.items():
        missing = sorted(set(contributors(w)) - set(payers))
        if missing:
            problems[m] = f"meter {m!r}: unknown paying account(s) {missing}"
            continue
        account_id = paying_account(rows[m].customer_id, w)
        balance, rules = combine(payers[account_id].rules,
                                 [payers[a] for a in sorted(set(contributors(w)))])  # fmt: skip
        try:
            choice = _choice(m, steps[m], histories, markets, customer=rows[m].customer_id, now=at)
        except LookupError as exc:
            problems[m] = str(exc)
            continue
        state = build_state(choice.tariff, balance, MeterState.load(carries.get(m)), rules,
                            tokens.get(m), selection=choice.meta)  # fmt: skip
        credits[m] = MeterCredit(m, rows[m].gateway_id, keys.get(rows[m].gateway_id, ""),
                                 account_id, state)  # fmt: skip


class _Markets:
    """The market (``hub.rating.pricing_store.load_market``) per currency, each read once, with
    the agreements of ``customers`` (the customers of the meters priced by a selection)."""

    def __init__(self, conn: Connection, customers: Iterable[str | None]) -> None:
        self._conn = conn
        self._customers = sorted({c for c in customers if c})
        self._by_currency: dict[str, Market] = {}

    def of(self, currency: str) -> Market:
        if currency not in self._by_currency:
            self._by_currency[currency] = load_market(self._conn, self._customers, currency)
        return self._by_currency[currency]


def _choice(
    meter_id: str, step: Step, histories: Mapping[str, TariffHistory], markets: _Markets, *,
    customer: str | None, now: datetime,
) -> Choice:  # fmt: skip
    """How the meter is priced at ``now``: the version of its tariff in force, or the providers
    its selection chooses (``hub.rating.pricing``, as the ingest planner does)."""
    missing = [t for t in step.tariff_ids if t not in histories]
    if missing:
        raise LookupError(f"tariff {missing[0]!r} has no version")
    versions = [histories[t].at(now) for t in step.tariff_ids]
    if step.policy is None:
        return Choice(versions[0])
    try:
        return choose(step, versions, markets.of(versions[0].currency), customer, (now, now, 0))
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
    credits, problems = credit_states(conn, meter_ids)
    for meter_id, why in sorted(problems.items()):
        log.warning("no credit state for %s: %s", meter_id, why)
    commands = {m: credit_command_for(c, ttl=ttl, reason=reason) for m, c in credits.items()}
    enqueue_many(conn, [(credits[m].gateway_id, command) for m, command in commands.items()])
    return {m: str(command["id"]) for m, command in commands.items()}


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
    meter_ids = set(
        conn.execute(select(_meters.c.id).where(_meters.c.tariff_id == tariff_id)).scalars()
    )
    meter_ids |= selecting(conn, tariff_id)
    return len(queue_credit_states_in(conn, meter_ids, reason="tariff update", ttl=ttl))
