"""Credit-control decisions for one meter: pure functions, no I/O.

:func:`evaluate` takes the meter's balance (minor units), the hub's :class:`CreditRules`, the
tariff's time zone, what the rules remember from the previous evaluation (:class:`Memory`) and
the time, and returns one :class:`Decision` and the new memory. The caller (``CreditBook``)
persists the memory and acts on the decision. The rules, in order:

- Cut-off floor: ``-(emergency_credit + alternate_available)``. The meter is *exhausted* when its
  balance is below the floor; with emergency credit the customer runs into it first (one
  ``emergency`` prompt when the balance goes below zero). ``alternate_available`` is what the
  hub will draw from the customer's alternate account: supply is not cut while it lasts.
- Low credit: each threshold in ``low_credit`` prompts once when the balance falls below it and
  is re-armed only when the balance is back at or above it, so a balance sitting below a
  threshold never prompts twice.
- Exhausted: a ``grace`` prompt, then a disconnect ``grace_s`` seconds after the exhaustion was
  first seen (at once when ``grace_s`` is 0).
- Friendly hours: no automatic cut-off inside a friendly window or on a listed holiday (local
  date and time in the tariff's zone), but only if the customer was in credit (balance above
  zero) and supplied when the friendly period began; otherwise the period gives no credit. When
  it ends, a customer still exhausted is cut off (after whatever grace is left).
- Protected customers are never cut off automatically: one ``protected`` prompt per exhaustion
  (so the gateway reports it), then nothing.
- Operator hold: after the hub reconnects a meter by command (``Memory.hold``), the rules do not
  cut it off again until the balance is back above zero or the hub sends a new credit state
  (one issued after the reconnect: ``hold_since``, so a state decided before it cannot undo it);
  the hub decided, the gateway does not overrule it offline.
- Reconnect, only after a cut-off these rules made, when the balance rises above
  ``max(reconnect_above, 0)``: above the cut-off floor, so the relay does not chatter.
"""

from datetime import datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict

from protocol.messages import CreditRules, FriendlyWindow

Action = Literal["none", "prompt", "disconnect", "reconnect"]
Relay = Literal["connected", "disconnected"]


class Decision(BaseModel):
    """What to do now: ``rule`` names the rule that decided, ``reason`` says why in one line."""

    model_config = ConfigDict(frozen=True)

    action: Action
    reason: str
    rule: str


class Memory(BaseModel):
    """What the rules remember about one meter between evaluations (persisted as JSON)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    relay: Relay = "connected"
    cut_by_rules: bool = False
    hold: bool = False
    hold_since: AwareDatetime | None = None  # when the hub's reconnect was issued
    prompted: tuple[int, ...] = ()
    exhausted_since: AwareDatetime | None = None
    exhausted_prompted: bool = False
    emergency_prompted: bool = False
    friendly_since: AwareDatetime | None = None
    friendly_ok: bool = False
    in_credit: bool | None = None


def evaluate(
    balance: int, rules: CreditRules, zone: ZoneInfo, memory: Memory, now: datetime
) -> tuple[Decision, Memory]:
    """The decision for a meter with ``balance`` at ``now``, and the memory to keep."""
    floor = -(rules.emergency_credit + rules.alternate_available)
    exhausted = balance < floor
    in_credit = balance > 0
    friendly_now = is_friendly(rules, zone, now)

    friendly_since, friendly_ok = None, False
    if friendly_now:
        if memory.friendly_since is not None:
            friendly_since, friendly_ok = memory.friendly_since, memory.friendly_ok
        else:
            was = memory.in_credit if memory.in_credit is not None else in_credit
            friendly_since, friendly_ok = now, was and memory.relay == "connected"

    still_below = {t for t in memory.prompted if balance < t}
    newly = sorted(t for t in set(rules.low_credit) if balance < t and t not in still_below)
    mem = memory.model_copy(
        update={
            "prompted": tuple(sorted(still_below | set(newly))),
            "friendly_since": friendly_since,
            "friendly_ok": friendly_ok,
            "in_credit": in_credit,
            "exhausted_since": (memory.exhausted_since or now) if exhausted else None,
            "exhausted_prompted": memory.exhausted_prompted and exhausted,
            "emergency_prompted": memory.emergency_prompted and balance < 0,
            "hold": memory.hold and not in_credit,
            "hold_since": memory.hold_since if memory.hold and not in_credit else None,
        }
    )

    if mem.relay == "disconnected":
        level = max(rules.reconnect_above, 0)
        if mem.cut_by_rules and balance > level:
            return _decide(
                "reconnect",
                f"balance {balance} above the reconnect level {level}",
                "reconnect",
                mem,
                relay="connected",
                cut_by_rules=False,
            )
        return Decision(action="none", reason="supply is off", rule="disconnected"), mem

    if exhausted:
        below = f"balance {balance} below the cut-off floor {floor}"
        if rules.protected:
            if not mem.exhausted_prompted:
                reason = f"{below}; protected customer, supply stays on"
                return _decide("prompt", reason, "protected", mem, exhausted_prompted=True)
            return Decision(action="none", reason="protected customer", rule="protected"), mem
        if mem.hold:
            return Decision(action="none", reason="reconnected by the hub", rule="hold"), mem
        if friendly_now and friendly_ok:
            if not mem.exhausted_prompted:
                reason = f"{below}; friendly hours, no cut-off until they end"
                return _decide("prompt", reason, "friendly", mem, exhausted_prompted=True)
            return Decision(action="none", reason="friendly hours", rule="friendly"), mem
        since = mem.exhausted_since or now
        if rules.grace_s > 0 and not mem.exhausted_prompted:
            reason = f"{below}; supply will be cut after {rules.grace_s} s"
            return _decide("prompt", reason, "grace", mem, exhausted_prompted=True)
        if now < since + timedelta(seconds=rules.grace_s):
            return Decision(action="none", reason="grace period", rule="grace"), mem
        why = "emergency credit exhausted" if rules.emergency_credit else "credit exhausted"
        if friendly_now:
            why += " (no friendly credit: not in credit when friendly hours began)"
        return _decide(
            "disconnect",
            f"{why}: {below}",
            "exhausted",
            mem,
            relay="disconnected",
            cut_by_rules=True,
        )

    if newly:
        reason = f"balance {balance} below the low-credit threshold {newly[0]}"
        return _decide("prompt", reason, "low_credit", mem)
    if balance < 0 and rules.emergency_credit > 0 and not mem.emergency_prompted:
        reason = f"on emergency credit: balance {balance}, cut-off below {floor}"
        return _decide("prompt", reason, "emergency", mem, emergency_prompted=True)
    return Decision(action="none", reason="in credit", rule="ok"), mem


def is_friendly(rules: CreditRules, zone: ZoneInfo, now: datetime) -> bool:
    """True inside a friendly window or on a listed holiday, in local time of ``zone``."""
    local = now.astimezone(zone)
    if local.date() in rules.holidays:
        return True
    return any(_inside(w, local.weekday(), local.time()) for w in rules.friendly)


def _inside(window: FriendlyWindow, today: int, clock: time) -> bool:
    """Like a time-of-use window: ``end`` at or before ``start`` wraps past midnight."""
    if window.start < window.end:
        return today in window.days and window.start <= clock < window.end
    yesterday = (today - 1) % 7
    return (today in window.days and clock >= window.start) or (
        yesterday in window.days and clock < window.end
    )


def _decide(
    action: Action, reason: str, rule: str, mem: Memory, **changes: object
) -> tuple[Decision, Memory]:
    return Decision(action=action, reason=reason, rule=rule), mem.model_copy(update=changes)
