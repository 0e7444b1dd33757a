"""The hub's credit-control runner: rules in, money moves, events and signed commands out.

:class:`CreditControl` is called after every posting that changes a balance (ingest, after a
batch commits, with the meters touched), after a top-up commits (the API), periodically
(``tick``: grace periods and friendly windows end without any posting) and for operator
actions. For each paying account, in one transaction (a meter paid by several accounts: steps 1
and 2 per payer, step 3 on their combined credit, ``hub.control.combined``):

1. alternate draw (claim 21): below zero and with an alternate account, move what the rule
   says from it (within its floor and ``alternate_limit``), an ``alternate_draw`` entry and
   event, before any cut-off;
2. emergency credit: still below zero, lower the floor by ``emergency_credit`` once per
   exhaustion (``emergency_credit`` event); at or above zero again, restore the floor;
3. per meter, ``protocol.rules.evaluate`` (the agent's own rules) with the memory kept in the
   database: low-credit prompts (``low_credit`` event + ``prompt`` command), grace, friendly
   hours, protected customers (``operator_alert`` instead of a cut-off), ``disconnect`` (one
   command and event per exhaustion, with reason and rule) and ``reconnect`` (hysteresis).

Commands are built, signed and written to the durable command table (``hub.commands.store``)
inside the transaction that decided them (their ids are in the events); after the commit the
meters' new credit states are queued the same way, the command dispatcher is woken (``wake``)
and notifications go out last. The dispatcher publishes from the table until the agent applies
each command or it expires; without MQTT (API-only use) commands stay ``queued``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from hub.audit import key_actor
from hub.commands.store import enqueue
from hub.control.combined import PayerCredit, combine
from hub.control.commands import DEFAULT_TTL, build_command
from hub.control.credit_state import alternate_headroom, queue_credit_states
from hub.control.effects import BY, Action, Plan, restore_floor
from hub.control.recovery import apply_recovery
from hub.control.rules import (
    Decision,
    Memory,
    draw_amount,
    emergency_floor,
    evaluate,
    rests,
)
from hub.control.state import (
    CHUNK,
    AccountCtx,
    MeterView,
    account_ctxs,
    meter_views,
    refresh_balance,
    save_memories,
    stored_rest_floor,
)
from hub.control.webhook import Channels, Notifier
from hub.db import read_tx, run_tx
from hub.errors import NotFoundError
from hub.ledger import post_entry, set_floor
from hub.models import Account, Customer, EntryKind, Gateway, Meter, table
from hub.rating.payers import has_split_rule, shared_meters

log = logging.getLogger(__name__)

QUEUED = "queued"  # a command's status when credit control has decided it (hub.commands.store)

Clock = Callable[[], datetime]
Known = tuple[int, Mapping[str, Any] | None, bool]  # (balance, flags, protected)
accounts = table(Account)
customers = table(Customer)
meters = table(Meter)
_gateways = table(Gateway)


def utc_now() -> datetime:
    return datetime.now(UTC)


class CreditControl:
    """Hub-side credit control over one database (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        wake: Callable[[], None] | None = None,
        notifier: Notifier | None = None,
        *,
        clock: Clock = utc_now,
        ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        self.engine = engine
        self.wake = wake
        self.notifier: Notifier = notifier or Channels()
        self.clock = clock
        self.ttl = ttl

    # -- entry points --------------------------------------------------------------------------

    def after_postings(
        self, meter_ids: Iterable[str], *, known: Mapping[str, Known] | None = None
    ) -> list[Action]:
        """Evaluate the accounts paying for ``meter_ids`` (ingest calls this after a batch).

        ``known``: per meter, (paying balance, paying customer's flags, protected) as the batch
        saw them after posting; a meter whose memory is stored there and which is at rest
        (``rules.at_rest``: in credit above every threshold, nothing pending) is skipped
        without opening a transaction. That is nearly every meter of a busy ingest stream."""
        wanted = sorted(m for m in set(meter_ids) if not (known and _resting(m, known.get(m))))
        if not wanted:
            return []
        now = self.clock()

        def work(session: Session) -> Plan:
            plan = Plan()
            self._evaluate(session, meter_views(session.connection(), wanted, now), now, plan)
            return plan

        return self._run(work)

    def tick(self) -> list[Action]:
        """Re-evaluate every meter paid (wholly or partly) by a customer account below zero:
        grace periods and friendly windows end with no posting to trigger it (the scheduler
        calls this every minute)."""
        with read_tx(self.engine) as conn:
            owing = set(conn.execute(
                select(accounts.c.id).join(customers, customers.c.id == accounts.c.id)
                .where(accounts.c.balance < 0)
            ).scalars())  # fmt: skip
            ids = meters_paid_by_any(conn, owing)
        return self.after_postings(ids)

    def after_topup(self, account_id: str, entry_id: int | None = None) -> list[Action]:
        """After a top-up of ``account_id`` committed (entry ``entry_id``): debt recovery,
        floor restored, reconnect above the threshold, credit state to the meters. A top-up
        of an alternate account also lets its customers below zero draw on it now."""
        now = self.clock()

        def work(session: Session) -> Plan:
            plan = Plan()
            conn = session.connection()
            if entry_id is not None:
                apply_recovery(session, account_id, entry_id, plan)
            ids = meters_of(conn, account_id)
            views = meter_views(conn, ids, now)
            plan.credit_meters.update(v.id for v in views if account_id in v.payers)
            self._evaluate(session, views, now, plan)
            return plan

        return self._run(work)

    def recover(self, session: Session, account_id: str, entry_id: int) -> Plan:
        """Debt recovery for top-up ``entry_id``, in the top-up's own transaction (``session``)
        so that no crash can commit the money without its recovery; ``dispatch`` the plan
        after the commit. A failure rolls back to a savepoint and is logged: the top-up stands
        and ``after_topup`` tries again after the commit."""
        plan = Plan()
        try:
            with session.begin_nested():
                apply_recovery(session, account_id, entry_id, plan)
        except Exception:
            log.exception("debt recovery for top-up %s of %s failed", entry_id, account_id)
            return Plan()
        return plan

    def dispatch(self, plan: Plan) -> list[Action]:
        """Carry out a committed plan (``recover``): credit states, commands, notifications."""
        self._dispatch(plan)
        return plan.actions

    def operator(
        self,
        meter_id: str,
        action: str,
        reason: str,
        *,
        by: Mapping[str, Any] | None = None,
    ) -> tuple[str, str, int]:
        """An operator's ``disconnect`` / ``reconnect`` with a reason: the rules' memory learns
        it (a manual cut-off is never undone automatically; a manual reconnect starts a fresh
        grace period), the command is signed and queued for the meter in the same transaction,
        and an audit event is stored. Returns (command id, status ``queued``, event id)."""
        if action not in ("disconnect", "reconnect"):
            raise ValueError(f"operator action must be disconnect or reconnect, not {action!r}")
        now = self.clock()

        def work(session: Session) -> Plan:
            conn = session.connection()
            row = conn.execute(
                select(meters.c.id, meters.c.gateway_id).where(meters.c.id == meter_id)
            ).first()
            if row is None:
                raise NotFoundError("meter", meter_id)
            plan = Plan()
            views = meter_views(conn, [meter_id], now)
            for view in views:
                view.memory = operator_memory(view.memory, action, now)
            save_memories(conn, views)
            key = _command_key(conn, row.gateway_id)
            command = self._command(
                conn, plan, key, row.gateway_id, meter_id, action=action,
                reason=f"operator: {reason}", params={"by": "operator"},
            )  # fmt: skip
            data = {"by": "operator", **(by or {}), "command_id": command["id"],
                    "status": QUEUED}  # fmt: skip
            plan.record(session, action, meter_id, reason, data, rule="operator",
                        command_id=command["id"], notify=False,
                        actor=key_actor((by or {}).get("key_id")))  # fmt: skip
            return plan

        plan = self._run_plan(work)
        last = plan.actions[-1]
        return str(last.command_id), QUEUED, int(last.event_id or 0)

    # -- the decision chain --------------------------------------------------------------------

    def _evaluate(
        self, session: Session, views: list[MeterView], now: datetime, plan: Plan
    ) -> None:
        """Per paying account (in id order, each locked): alternate draw and emergency credit;
        then per meter, the rules on its payers' combined credit (``hub.control.combined``:
        one payer's own balance and rules for a meter it pays alone)."""
        conn = session.connection()
        ctxs: dict[str, AccountCtx] = {}
        paid: dict[str, list[MeterView]] = {}
        for view in views:
            for account_id in view.payers:
                paid.setdefault(account_id, []).append(view)
        for account_id, ctx in sorted(account_ctxs(conn, paid).items()):
            ctx.meters = paid[account_id]
            self._draw(session, ctx, plan)
            self._emergency(session, ctx, plan)
            ctxs[account_id] = ctx
        headroom = alternate_headroom(conn, [c.id for c in ctxs.values() if c.alternate_id])
        for view in views:
            payers = [ctxs[a] for a in view.payers if a in ctxs]
            if view.account_id not in ctxs or len(payers) != len(view.payers):
                log.warning("credit control skips %s: a paying account is missing", view.id)
                continue
            # as the agent is told: no cut while an alternate account can still be drawn on
            credits = [PayerCredit(c.id, c.balance, c.rules if c.alternate_id is None else
                                   c.rules.model_copy(update={
                                       "alternate_available": headroom.get(c.id, 0)}))
                       for c in payers]  # fmt: skip
            primary = next(c.rules for c in credits if c.account == view.account_id)
            balance, rules = combine(primary, credits)
            decision, view.memory = evaluate(balance, rules, view.zone, view.memory, now)
            self._apply(session, ctxs[view.account_id], view, decision, plan, balance=balance)
        save_memories(conn, views)

    def _draw(self, session: Session, ctx: AccountCtx, plan: Plan) -> None:
        if ctx.alternate_id is None or ctx.balance >= 0 or ctx.policy.alternate_draw is None:
            return
        conn = session.connection()
        alt = conn.execute(
            select(accounts.c.balance, accounts.c.floor, accounts.c.currency)
            .where(accounts.c.id == ctx.alternate_id).with_for_update()
        ).first()  # fmt: skip
        if alt is None or alt.currency != ctx.currency:
            log.warning("customer %s: alternate account %s unusable", ctx.id, ctx.alternate_id)
            return
        available = None if alt.floor is None else max(0, int(alt.balance) - int(alt.floor))
        relay_off = any(v.memory.relay == "disconnected" or v.relay == "off" for v in ctx.meters)
        amount = draw_amount(ctx.balance, ctx.policy, reconnect_above=ctx.rules.reconnect_above,
                             available=available, relay_off=relay_off)  # fmt: skip
        if amount <= 0:
            log.info("customer %s below zero; alternate account %s has nothing to draw",
                     ctx.id, ctx.alternate_id)  # fmt: skip
            return
        before = ctx.balance
        meta = {"rule": "alternate_draw", "alternate_draw": ctx.policy.alternate_draw,
                "alternate_limit": ctx.policy.alternate_limit, "available": available,
                "balance_before": before, "customer": ctx.id,
                "alternate": ctx.alternate_id}  # fmt: skip
        entry_id = post_entry(session, EntryKind.ALTERNATE_DRAW,
                              [(ctx.alternate_id, -amount), (ctx.id, amount)], ctx.currency,
                              memo=f"alternate draw for {ctx.id}", metadata=meta)  # fmt: skip
        refresh_balance(conn, ctx)
        reason = (f"drew {amount} from alternate account {ctx.alternate_id}: balance "
                  f"{before} -> {ctx.balance}")  # fmt: skip
        data = {**meta, "by": BY, "entry_id": entry_id, "amount": amount,
                "balance": ctx.balance, "meters": [v.id for v in ctx.meters]}  # fmt: skip
        plan.record(session, "alternate_draw", ctx.meters[0].id, reason, data,
                    rule="alternate_draw")  # fmt: skip
        plan.credit_meters.update(v.id for v in ctx.meters)

    def _emergency(self, session: Session, ctx: AccountCtx, plan: Plan) -> None:
        conn = session.connection()
        floor = emergency_floor(ctx.balance, ctx.floor, ctx.rules.emergency_credit)
        if floor is not None:
            set_floor(conn, ctx.id, floor)
            ctx.floor = floor
            reason = (f"emergency credit of {ctx.rules.emergency_credit} taken at balance "
                      f"{ctx.balance}; cut-off below {floor}")  # fmt: skip
            data = {"by": BY, "account": ctx.id, "emergency_credit": ctx.rules.emergency_credit,
                    "floor": floor, "balance": ctx.balance}  # fmt: skip
            plan.record(session, "emergency_credit", ctx.meters[0].id, reason, data,
                        rule="emergency")  # fmt: skip
        elif ctx.floor is not None and ctx.floor < 0 and ctx.balance >= 0:
            restore_floor(session, ctx, plan, "balance back at or above zero")

    def _apply(
        self, session: Session, ctx: AccountCtx, view: MeterView, decision: Decision, plan: Plan,
        *, balance: int,
    ) -> None:  # fmt: skip
        if decision.action == "none":
            return
        base: dict[str, Any] = {"by": BY, "rule": decision.rule, "account": ctx.id,
                                "balance": balance}  # fmt: skip
        if len(view.payers) > 1:  # a shared meter: ``balance`` is the payers' combined one
            base["payers"] = list(view.payers)
        if decision.action == "prompt":
            kind = "operator_alert" if decision.rule == "protected" else "low_credit"
            command = self._command(session.connection(), plan, view.command_key,
                                    view.gateway_id, view.id, action="prompt",
                                    reason=decision.reason,
                                    params={"rule": decision.rule})  # fmt: skip
            data = {**base, "command_id": command["id"], "status": QUEUED}
            plan.record(session, kind, view.id, decision.reason, data, rule=decision.rule,
                        command_id=command["id"])  # fmt: skip
            return
        action = decision.action  # disconnect | reconnect
        reason = f"{decision.reason} (rule: {decision.rule})"
        command = self._command(session.connection(), plan, view.command_key, view.gateway_id,
                                view.id, action=action, reason=reason,
                                params={"rule": decision.rule})  # fmt: skip
        data = {**base, "command_id": command["id"], "status": QUEUED}
        plan.record(session, action, view.id, decision.reason, data, rule=decision.rule,
                    command_id=command["id"])  # fmt: skip
        if action == "reconnect":
            plan.credit_meters.add(view.id)

    # -- helpers -------------------------------------------------------------------------------

    def _command(
        self, conn: Connection, plan: Plan, key: str, gateway: str, meter_id: str, *,
        action: str, reason: str, params: dict[str, Any],
    ) -> dict[str, Any]:  # fmt: skip
        command = build_command(key, meter_id, action, params=params, reason=reason, ttl=self.ttl)
        enqueue(conn, gateway, command)
        plan.commands.append((gateway, command))
        return command

    def _run(self, work: Callable[[Session], Plan]) -> list[Action]:
        return self._run_plan(work).actions

    def _run_plan(self, work: Callable[[Session], Plan]) -> Plan:
        plan = run_tx(self.engine, work)
        self._dispatch(plan)
        return plan

    def _dispatch(self, plan: Plan) -> None:
        """After the commit: credit states queued (a draw must reach the agent before it cuts
        on its own; each one queued is listed as a ``credit_state`` action, no event), the
        dispatcher woken for them and the plan's commands (queued in the decision's
        transaction), then notifications. Failures are logged, never raised: the decision is
        committed and the next evaluation or credit state corrects it."""
        try:
            queued = queue_credit_states(self.engine, plan.credit_meters,
                                         reason="credit control", ttl=self.ttl)  # fmt: skip
        except Exception:
            log.exception("credit states of %s not queued", sorted(plan.credit_meters))
            queued = {}
        for meter_id, command_id in queued.items():  # the caller may drop older states
            plan.actions.append(Action("credit_state", meter_id, "credit state queued",
                                       command_id=command_id))  # fmt: skip
        if self.wake is not None and (plan.commands or plan.credit_meters):
            self.wake()
        for notice in plan.notices:
            self.notifier.notify(notice)


def _resting(meter_id: str, known: Known | None) -> bool:
    if known is None:
        return False
    balance, flags, protected = known
    return rests(balance, stored_rest_floor(meter_id, flags, protected))


def operator_memory(memory: Memory, action: str, now: datetime) -> Memory:
    """The rules' memory after an operator action: a manual cut-off is not the rules' (no
    automatic reconnect); a manual reconnect restarts exhaustion handling from ``now``."""
    if action == "disconnect":
        return memory.model_copy(update={"relay": "disconnected", "cut_by_rules": False})
    fresh = {"relay": "connected", "cut_by_rules": False, "exhausted_since": None,
             "exhausted_prompted": False}  # fmt: skip
    return memory.model_copy(update=fresh)


def meters_of(conn: Connection, account_id: str) -> list[str]:
    """Meters paid (wholly or partly) by ``account_id``, and meters of the customers whose
    alternate account it is."""
    found = set(conn.execute(select(meters.c.id).where(meters.c.customer_id == account_id))
                .scalars())  # fmt: skip
    found |= shared_meters(conn, [account_id])
    for row in conn.execute(select(meters.c.id, meters.c.split_rule)
                            .where(has_split_rule(meters.c.split_rule))):  # fmt: skip
        if account_id in ((row.split_rule or {}).get("accounts") or {}):
            found.add(row.id)
    backed = select(customers.c.id).where(customers.c.alternate_account_id == account_id)
    found |= set(conn.execute(select(meters.c.id).where(meters.c.customer_id.in_(backed)))
                 .scalars())  # fmt: skip
    return sorted(found)


def meters_paid_by_any(conn: Connection, account_ids: set[str]) -> list[str]:
    """Meters paid (wholly or partly) by any of ``account_ids``: as their customer, as a
    sharing user, or through a split rule."""
    if not account_ids:
        return []
    found: set[str] = set()
    ids = sorted(account_ids)
    for i in range(0, len(ids), CHUNK):
        part = ids[i : i + CHUNK]
        found |= set(conn.execute(select(meters.c.id).where(meters.c.customer_id.in_(part)))
                     .scalars())  # fmt: skip
    found |= shared_meters(conn, ids)
    for row in conn.execute(select(meters.c.id, meters.c.split_rule)
                            .where(has_split_rule(meters.c.split_rule))):  # fmt: skip
        if account_ids & set((row.split_rule or {}).get("accounts") or {}):
            found.add(row.id)
    return sorted(found)


def _command_key(conn: Connection, gateway_id: str) -> str:
    stmt = select(_gateways.c.command_key).where(_gateways.c.id == gateway_id)
    return str(conn.execute(stmt).scalar_one())
