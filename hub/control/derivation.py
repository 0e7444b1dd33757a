"""Whether an agent can still work out its meter's balance alone after a batch of usage (pure).

The agent's figure is its last credit state's balance minus its own charges of the records
after that state's ``as_of_seq`` (``agent.credit``). After a batch it is still the hub's balance
exactly when the records posted are the very next ones after the baseline's seq, with no gap
and none refused (a refused record the agent charged, the hub did not), the agent priced each
as the hub did (no mismatch), and nothing but those charges moved the balance (no top-up,
standing charge, other meter of the account or payer sharing the meter in between).
"""

from __future__ import annotations

from collections.abc import Sequence


def derived_balance(
    seq: int, expected: int, charges: Sequence[tuple[int, int]], state_seq: int
) -> int | None:
    """The balance the agent works out from a baseline (``seq``, ``expected``) and the batch's
    ``charges`` ((seq, debit) of the meter's posted records, debits positive) when the meter's
    rating state is now at ``state_seq``; None when it cannot tell (a gap, a refused record,
    records out of turn)."""
    if not charges:
        return None
    ordered = sorted(charges)
    if [s for s, _ in ordered] != list(range(seq + 1, seq + 1 + len(ordered))):
        return None
    if ordered[-1][0] != state_seq:
        return None
    return expected - sum(debit for _, debit in ordered)
