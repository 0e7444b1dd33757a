"""What a settler reports of each meter whose balance a batch changed: the :class:`CreditInfo`
the coordinator builds the meter's credit state from or, when the meter's agent works that
state out alone (``hub.commands.baseline``), a :class:`Derived` with only what credit control
needs. Deciding it in the settling process spares the coordinator building those states and
both processes passing them (pickling the reports took 15 % of a settler's CPU in
``bench.fleet``, nearly all of it for states that were never sent)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from hub.commands.chain import Chain
from hub.control.credit_state import MeterCredit, build_state, credit_rules
from hub.ingest.model import CreditInfo, Derived
from protocol.messages import CreditState


def to_meter_credit(info: CreditInfo) -> MeterCredit:
    rules = info.rules or credit_rules(info.flags, info.protected, info.alternate_available)
    state = build_state(info.tariff, info.balance, info.state, rules, info.tokens,
                        selection=info.selection)  # fmt: skip
    return MeterCredit(info.meter_id, info.gateway_id, info.command_key, info.account_id, state)


class MeterDigests:
    """The digest of each meter's credit state (``hub.commands.baseline.digest``), remembered
    with what it was built from besides what moves (tariff, the customer's flags, protection and
    alternate headroom, tokens, rules, selection): the state of a meter whose inputs are those
    of its last batch is not built and hashed again (that was 10 % of a settler's CPU in
    ``bench.batch_cpu --shape fleet``). The inputs are read afresh in every batch, so this memo
    of a pure function holds whatever other processes change; one per settler, an entry per
    meter it reported, as its cache of rating states."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[tuple[Any, ...], str]] = {}

    def of(self, info: CreditInfo, digests: Callable[[CreditState], str]) -> str:
        """The digest of ``info``'s state (``digests`` hashes one built: a batch's
        ``hub.commands.baseline.StateDigests``); ValueError or LookupError when it cannot be
        built."""
        inputs = (info.tariff, info.flags, info.protected, info.alternate_available, info.tokens,
                  info.rules, info.selection)  # fmt: skip
        held = self._memo.get(info.meter_id)
        if held is not None and held[0] == inputs:
            return held[1]
        found = digests(to_meter_credit(info).state)
        self._memo[info.meter_id] = (inputs, found)
        return found


def report(
    info: CreditInfo,
    told: Chain | None,
    refresh: timedelta,
    digest_of: Callable[[CreditInfo], str],
    now: datetime,
) -> CreditInfo | Derived:
    """``info``, or a :class:`Derived` when the agent works the state out alone from what it was
    last sent: its balance (``told``: the meter's chain, when the batch's step held on it;
    ``hub.commands.baseline``), not ``refresh`` or longer ago, and the rest of the state
    unchanged (``digest_of``: the digest of ``info``'s state, :meth:`MeterDigests.of`)."""
    if told is None or told.sent_at is None or now - told.sent_at >= refresh:
        return info
    try:
        found = digest_of(info)
    except (ValueError, LookupError):  # the coordinator builds it again and says why not
        return info
    if found != told.digest:
        return info
    return Derived(info.meter_id, info.balance, info.flags, info.protected)
