"""What a settler reports of each meter whose balance a batch changed: the :class:`CreditInfo`
the coordinator builds the meter's credit state from or, when the meter's agent works that
state out alone (``hub.commands.baseline``), a :class:`Derived` with only what credit control
needs, or None when that meter is also at rest (``hub.control.rules.rest_floor``) and credit
control would skip it. Deciding it in the settling process spares the coordinator building those
states and both processes passing them (pickling the reports took 15 % of a settler's CPU in
``bench.fleet``, nearly all of it for states that were never sent; the at-rest test, with each
customer's flags passed to it, was a quarter of the coordinator's)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from hub.commands.chain import Chain
from hub.control.credit_state import MeterCredit, build_state, credit_rules
from hub.control.rules import rests
from hub.control.state import stored_rest_floor
from hub.ingest.model import CreditInfo, CreditReport, Derived
from protocol.messages import CreditState


def to_meter_credit(info: CreditInfo) -> MeterCredit:
    rules = info.rules or credit_rules(info.flags, info.protected, info.alternate_available)
    state = build_state(info.tariff, info.balance, info.state, rules, info.tokens,
                        selection=info.selection)  # fmt: skip
    return MeterCredit(info.meter_id, info.gateway_id, info.command_key, info.account_id, state)


class Digest(NamedTuple):
    """A meter's credit state's digest, and the balance above which the meter is at rest
    (``hub.control.state.stored_rest_floor``; None: not at rest at any balance)."""

    digest: str
    rest_floor: int | None


class MeterDigests:
    """The :class:`Digest` of each meter's credit state (``hub.commands.baseline.digest``),
    remembered with what it was built from besides what moves (tariff, the customer's flags,
    protection and alternate headroom, tokens, rules, selection): the state of a meter whose
    inputs are those of its last batch is not built and hashed again (that was 10 % of a
    settler's CPU in ``bench.batch_cpu --shape fleet``), nor its memory and rules read again for
    the at-rest test. The inputs are read afresh in every batch, so this memo of a pure function
    holds whatever other processes change; one per settler, an entry per meter it reported, as
    its cache of rating states."""

    def __init__(self) -> None:
        self._memo: dict[str, tuple[tuple[Any, ...], Digest]] = {}

    def of(self, info: CreditInfo, digests: Callable[[CreditState], str]) -> Digest:
        """The digest of ``info``'s state (``digests`` hashes one built: a batch's
        ``hub.commands.baseline.StateDigests``) and its rest floor; ValueError or LookupError
        when the state cannot be built."""
        inputs = (info.tariff, info.flags, info.protected, info.alternate_available, info.tokens,
                  info.rules, info.selection)  # fmt: skip
        held = self._memo.get(info.meter_id)
        if held is not None and held[0] == inputs:
            return held[1]
        found = Digest(digests(to_meter_credit(info).state),
                       stored_rest_floor(info.meter_id, info.flags, info.protected))  # fmt: skip
        self._memo[info.meter_id] = (inputs, found)
        return found


def report(
    info: CreditInfo,
    told: Chain | None,
    refresh: timedelta,
    digest_of: Callable[[CreditInfo], Digest],
    now: datetime,
) -> CreditReport:
    """``info``, or a :class:`Derived` when the agent works the state out alone from what it was
    last sent: its balance (``told``: the meter's chain, when the batch's step held on it;
    ``hub.commands.baseline``), not ``refresh`` or longer ago, and the rest of the state
    unchanged (``digest_of``: :meth:`MeterDigests.of`); None instead of that Derived when the
    meter is also at rest at its balance. Only a meter paid by its own customer's account is
    derived (``info.rules`` is None), so the customer's own rules decide that."""
    if told is None or told.sent_at is None or now - told.sent_at >= refresh:
        return info
    try:
        found = digest_of(info)
    except (ValueError, LookupError):  # the coordinator builds it again and says why not
        return info
    if found.digest != told.digest:
        return info
    if rests(info.balance, found.rest_floor):
        return None
    return Derived(info.meter_id, info.balance, info.flags, info.protected)
