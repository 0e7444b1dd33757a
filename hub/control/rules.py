"""Hub-side credit rules: pure functions, no I/O.

The per-meter decision (low-credit prompts, grace, friendly hours and holidays, protected
customers, cut-off, reconnect hysteresis) is ``protocol.rules.evaluate``: the very function the
agent applies offline, imported here so that hub and agent cannot disagree. This module adds
what only the hub does, because only the hub moves money:

- :func:`draw_amount`: how much to draw from the alternate account (claim 21);
- :func:`emergency_floor`: when the customer takes emergency credit (the floor moves);
- :func:`recovery`: how a top-up is split between emergency credit, debt and new credit.

A customer's rules are one object (API ``credit_rules``): the fields of
``protocol.messages.CreditRules`` (sent to the gateway) plus the hub-only :class:`Policy`
fields. They are stored apart in ``customers.flags``: ``credit_rules`` (protocol part, what
``hub.control.credit_state`` sends) and ``credit_policy`` (hub part).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocol.messages import MAX_MONEY, CreditRules
from protocol.rules import Decision, Memory, evaluate, is_friendly

__all__ = [
    "CustomerRules",
    "Decision",
    "Memory",
    "Policy",
    "Recovery",
    "RulesError",
    "at_rest",
    "draw_amount",
    "emergency_floor",
    "evaluate",
    "is_friendly",
    "recovery",
    "rest_floor",
    "rests",
    "split_rules",
    "stored_rules",
]

Amount = Annotated[int, Field(gt=0, le=MAX_MONEY)]


class RulesError(ValueError):
    """A customer's credit rules do not validate; ``field`` names the first bad field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Policy(BaseModel):
    """Hub-only credit rules (amounts in minor units).

    ``alternate_draw``: ``"needed"`` draws what brings the balance back to the reconnect
    level, an integer draws exactly that amount, None never draws. ``alternate_limit``: the
    most one draw moves (None: only the alternate account's floor limits it).
    ``debt_recovery_share``: the share of each top-up that repays debt after emergency credit
    is repaid in full (a decimal string or number in [0, 1]; None: the whole deficit is repaid
    first, as plain prepaid netting does).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alternate_draw: Literal["needed"] | Amount | None = "needed"
    alternate_limit: Amount | None = None
    debt_recovery_share: Fraction | None = None

    @field_validator("debt_recovery_share", mode="before")
    @classmethod
    def _share(cls, value: Any) -> Fraction | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
            raise ValueError("must be a decimal such as 0.25")
        try:
            share = Fraction(Decimal(str(value)))
        except (ArithmeticError, ValueError) as exc:
            raise ValueError("must be a decimal such as 0.25") from exc
        if not 0 <= share <= 1:
            raise ValueError("must be between 0 and 1")
        return share

    def as_json(self) -> dict[str, Any]:
        share = self.debt_recovery_share
        return {
            "alternate_draw": self.alternate_draw,
            "alternate_limit": self.alternate_limit,
            "debt_recovery_share": None if share is None else _decimal_text(share),
        }

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any] | None) -> Policy:
        """The stored policy (``flags["credit_policy"]``); defaults when absent or invalid."""
        try:
            return cls.model_validate(dict((flags or {}).get("credit_policy") or {}))
        except ValidationError:
            return cls()


class CustomerRules(CreditRules):
    """A customer's credit rules as the API takes them (``POST /customers`` ``credit_rules``):
    the protocol's ``CreditRules`` fields (sent to the gateway) plus the hub-only ``Policy``
    fields. Amounts in minor units."""

    alternate_draw: Literal["needed"] | Amount | None = "needed"
    alternate_limit: Amount | None = None
    debt_recovery_share: Annotated[Decimal, Field(ge=0, le=1, max_digits=8)] | None = None

    def split(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(``flags["credit_rules"]``, ``flags["credit_policy"]``)."""
        return split_rules(self.model_dump(mode="json", exclude_unset=True))


def stored_rules(flags: Mapping[str, Any] | None) -> dict[str, Any]:
    """The customer's rules as given (both parts, unset fields left out), for the API."""
    flags = flags or {}
    policy = {k: v for k, v in (flags.get("credit_policy") or {}).items() if v is not None}
    return {**(flags.get("credit_rules") or {}), **policy}


def split_rules(given: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate one ``credit_rules`` object and split it into the protocol part (JSON of
    ``CreditRules``, for ``flags["credit_rules"]``) and the hub part (``flags["credit_policy"]``).
    RulesError names the first bad or unknown field."""
    hub_keys = set(Policy.model_fields)
    proto = {k: v for k, v in given.items() if k not in hub_keys}
    hub = {k: v for k, v in given.items() if k in hub_keys}
    try:
        rules = CreditRules.model_validate(proto)
        policy = Policy.model_validate(hub)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "credit_rules"
        raise RulesError(where, err["msg"]) from exc
    return rules.model_dump(mode="json", exclude_defaults=True), policy.as_json()


def at_rest(balance: int, rules: CreditRules, memory: Memory) -> bool:
    """True when evaluating would neither act nor change the memory in any way that matters:
    in credit above every low-credit threshold, supplied, nothing prompted or pending, no
    friendly period under way. Lets the hub skip most meters after a usage batch."""
    return rests(balance, rest_floor(rules, memory))


def rests(balance: int, floor: int | None) -> bool:
    """Whether a meter with ``balance`` is at rest, given its :func:`rest_floor`."""
    return floor is not None and balance > floor


def rest_floor(rules: CreditRules, memory: Memory) -> int | None:
    """The balance above which a meter with ``rules`` and ``memory`` is at rest (:func:`at_rest`):
    its highest low-credit threshold, at least 0; None when the memory is not quiet (it is not at
    rest at any balance). Apart from the balance, so that a settler can keep it per meter while
    the rules and memory stay as they were."""
    quiet = (
        memory.relay == "connected"
        and not memory.cut_by_rules
        and not memory.prompted
        and memory.exhausted_since is None
        and not memory.exhausted_prompted
        and not memory.emergency_prompted
        and memory.friendly_since is None
        and memory.in_credit is not False
    )
    return max((0, *rules.low_credit)) if quiet else None


def draw_amount(
    balance: int,
    policy: Policy,
    *,
    reconnect_above: int,
    available: int | None,
    relay_off: bool = False,
) -> int:
    """Minor units to move from the alternate account now (0: no draw).

    A draw happens only when ``balance`` is below zero (the customer would be cut off).
    ``available``: what the alternate account can give above its floor (None: no floor).
    "needed" tops the balance up to ``max(reconnect_above, 0)`` (one more when the relay is
    off, so that the draw also reconnects: reconnect needs a balance above the level).
    """
    if balance >= 0 or policy.alternate_draw is None:
        return 0
    if policy.alternate_draw == "needed":
        target = max(reconnect_above, 0) + (1 if relay_off else 0)
        want = target - balance
    else:
        want = int(policy.alternate_draw)
    if policy.alternate_limit is not None:
        want = min(want, policy.alternate_limit)
    if available is not None:
        want = min(want, available)
    return max(want, 0)


def emergency_floor(balance: int, floor: int | None, emergency_credit: int) -> int | None:
    """The floor to set when the customer takes emergency credit now, else None.

    Taken once per exhaustion: when the balance goes below zero while the floor is not
    already lowered. It stays lowered until a top-up (or draw) repays it in full.
    """
    if emergency_credit <= 0 or balance >= 0:
        return None
    if floor is not None and floor < 0:
        return None
    return -emergency_credit


@dataclass(frozen=True)
class Recovery:
    """How one top-up of ``amount`` is applied (all minor units, none negative).

    ``emergency_repaid + debt_recovered + credit == amount``. With a recovery share the
    deficit beyond emergency credit (energy consumed past the cut-off) is ``debt_moved`` from
    the prepaid account to the customer's debt account at this top-up, and ``transfer`` is the
    net the prepaid account receives from (positive) or pays to (negative) the debt account.
    Without a share (netting) nothing moves: the prepaid balance absorbs the deficit.
    """

    amount: int
    balance_before: int
    emergency_repaid: int
    emergency_outstanding: int
    debt_moved: int
    debt_recovered: int
    debt_outstanding: int
    credit: int
    transfer: int

    @property
    def balance_after(self) -> int:
        return self.balance_before + self.amount + self.transfer

    @property
    def floor_restored(self) -> bool:
        """Emergency credit (and netted debt) repaid in full: the floor goes back to 0."""
        return self.balance_after >= 0

    def as_json(self) -> dict[str, int]:
        return {
            "amount": self.amount,
            "balance_before": self.balance_before,
            "emergency_repaid": self.emergency_repaid,
            "emergency_outstanding": self.emergency_outstanding,
            "debt_moved": self.debt_moved,
            "debt_recovered": self.debt_recovered,
            "debt_outstanding": self.debt_outstanding,
            "credit": self.credit,
            "balance_after": self.balance_after,
        }


def recovery(
    amount: int,
    balance_before: int,
    *,
    emergency_in_use: int,
    debt: int,
    share: Fraction | None,
) -> Recovery:
    """Split a top-up of ``amount`` made when the prepaid balance was ``balance_before``.

    ``emergency_in_use``: the emergency credit granted (``-floor`` when the floor is lowered,
    else 0); ``debt``: what the debt account already holds (owed, >= 0). Emergency credit is
    repaid in full first; then ``share`` of the top-up (rounded down) repays debt; the rest is
    credit. With ``share`` None there is no separate debt: the deficit is netted in full.
    """
    deficit = max(0, -balance_before)
    emergency_used = min(deficit, max(emergency_in_use, 0))
    emergency_repaid = min(emergency_used, amount)
    rest = amount - emergency_repaid
    beyond = deficit - emergency_used
    if share is None:  # plain netting: the prepaid balance absorbs the debt
        netted = min(beyond, rest)
        return Recovery(amount, balance_before, emergency_repaid, emergency_used - emergency_repaid,
                        0, netted, beyond - netted + debt, rest - netted, 0)  # fmt: skip
    owed = debt + beyond
    recovered = min(owed, int(share * amount), rest)
    return Recovery(amount, balance_before, emergency_repaid, emergency_used - emergency_repaid,
                    beyond, recovered, owed - recovered, rest - recovered,
                    beyond - recovered)  # fmt: skip


def _decimal_text(value: Fraction) -> str:
    return str(Decimal(value.numerator) / Decimal(value.denominator))
