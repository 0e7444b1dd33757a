"""Credit control of a meter paid by several accounts (claims 10, 11, 13): the payers'
COMBINED credit.

A shared meter (``meter_customers`` rows with positive weights, or a split rule naming several
accounts) is cut off only when its contributing payers together cannot cover it. Each payer
keeps its own money rules: the hub draws on a payer's alternate account and takes a payer's
emergency credit for that payer alone (``CreditControl`` steps 1 and 2, per account). The
meter's decision then uses :func:`combine`:

- balance: the sum of the contributing payers' balances (a payer of weight 0 is not counted);
- ``emergency_credit`` and ``alternate_available``: the sums over those payers, so the cut-off
  floor ``-(emergency_credit + alternate_available)`` is where the payers' credit, emergency
  credit and alternate headroom together are used up (each sum capped at ``MAX_MONEY``; a
  postpaid payer's unbounded headroom keeps the meter on);
- ``protected``: true when ANY contributing payer is protected: the meter is never cut off
  automatically, an ``operator_alert`` is raised instead (cutting it would cut the protected
  payer's supply too);
- every other rule (low-credit thresholds, reconnect level, grace, friendly hours, holidays):
  the primary payer's (``hub.rating.payers.paying_account``: the meter's customer when it
  contributes, else the payer of the largest weight), whose customer row keeps the meter's
  memory.

The agent is sent exactly this balance and these rules in the meter's credit state, and prices
each interval whole against the combined balance (the sum of the portions is the interval's
debit), so it enforces the same cut-off offline. A meter with one payer is unchanged: the
combination of one payer is that payer's balance and rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.messages import MAX_MONEY, CreditRules


@dataclass(frozen=True)
class PayerCredit:
    """One contributing payer: its balance and its rules (with its own alternate headroom)."""

    account: str
    balance: int
    rules: CreditRules


def combine(primary: CreditRules, payers: Sequence[PayerCredit]) -> tuple[int, CreditRules]:
    """The balance and rules a meter paid by ``payers`` is evaluated with (see the module)."""
    if not payers:
        raise ValueError("a meter needs at least one contributing payer")
    if len(payers) == 1:
        return payers[0].balance, payers[0].rules
    balance = max(-MAX_MONEY, min(MAX_MONEY, sum(p.balance for p in payers)))
    rules = primary.model_copy(
        update={
            "emergency_credit": min(MAX_MONEY, sum(p.rules.emergency_credit for p in payers)),
            "alternate_available": min(MAX_MONEY, sum(p.rules.alternate_available for p in payers)),
            "protected": any(p.rules.protected for p in payers),
        }
    )
    return balance, rules
