"""What a settler reports of each meter whose balance a batch changed: the :class:`CreditInfo`
the coordinator builds the meter's credit state from or, when the meter's agent works that
state out alone (``hub.commands.baseline``), a :class:`Derived` with only what credit control
needs. Deciding it in the settling process spares the coordinator building those states and
both processes passing them (pickling the reports took 15 % of a settler's CPU in
``bench.fleet``, nearly all of it for states that were never sent)."""

from __future__ import annotations

from datetime import datetime, timedelta

from hub.commands.baseline import StateDigests
from hub.commands.chain import Chain
from hub.control.credit_state import MeterCredit, build_state, credit_rules
from hub.ingest.model import CreditInfo, Derived


def to_meter_credit(info: CreditInfo) -> MeterCredit:
    rules = info.rules or credit_rules(info.flags, info.protected, info.alternate_available)
    state = build_state(info.tariff, info.balance, info.state, rules, info.tokens,
                        selection=info.selection)  # fmt: skip
    return MeterCredit(info.meter_id, info.gateway_id, info.command_key, info.account_id, state)


def report(
    info: CreditInfo, told: Chain | None, refresh: timedelta, digests: StateDigests, now: datetime
) -> CreditInfo | Derived:
    """``info``, or a :class:`Derived` when the agent works the state out alone from what it was
    last sent: its balance (``told``: the meter's chain, when the batch's step held on it;
    ``hub.commands.baseline``), not ``refresh`` or longer ago, and the rest of the state
    unchanged (its digest)."""
    if told is None or told.sent_at is None or now - told.sent_at >= refresh:
        return info
    try:
        state = to_meter_credit(info).state
    except (ValueError, LookupError):  # the coordinator builds it again and says why not
        return info
    if digests(state) != told.digest:
        return info
    return Derived(info.meter_id, info.balance, info.flags, info.protected)
