"""Whether an agent can still work out its meter's balance alone after a batch of usage (pure).

The agent's figure is its last credit state's balance minus its own charges of the records
after that state's ``as_of_seq`` (``agent.credit``). The hub keeps per meter a *chain*: the
balances the agent works out at the ends of the batches posted since the chain (re)started,
each step checked to be nothing but the meter's own charges. A step holds exactly when the
records posted are the very next ones after the chain's end, with no gap and none refused (a
refused record the agent charged, the hub did not), the agent priced each as the hub did (no
mismatch: the caller passes no charges then) and nothing else moved the balance (a top-up,
standing charge, other meter of the account, payer sharing the meter). Otherwise the chain
restarts at the batch's end.

A chain is *blessed* by a credit state queued on it: a state whose (seq, balance) is one of
the chain's points gives the agent exactly that point, from which it works out the rest; any
other state starts a chain of its own. Only a blessed chain lets the hub leave a state out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

# Points kept. A state is built from one of the meter's last batches (the coordinator queues
# it a second or two after the batch) or from its balance now, so it blesses one of the last
# few points; an older one only restarts the chain (one more state later, nothing wrong). Each
# batch reads and writes every point of its meters' chains: 16 points cost about 10 us a meter
# (JSON both ways, timed alone), 8 % of the 126 us a record ``bench.batch_cpu --shape fleet``
# measured.
CHAIN_MAX = 4


@dataclass(frozen=True)
class Chain:
    """A meter's chain: its ``points`` ((seq, balance) at each batch end, oldest first; the
    last is its end) and the state that blessed it (``digest`` of what the state carries
    besides balance, seq and carry; ``command_id``; ``sent_at``), or ``""`` and None: none yet."""

    points: tuple[tuple[int, int], ...]
    digest: str = ""
    command_id: str = ""
    sent_at: datetime | None = None

    @property
    def seq(self) -> int:
        return self.points[-1][0]

    @property
    def expected(self) -> int:
        """The balance the agent works out at the chain's end."""
        return self.points[-1][1]


def derived_balance(
    seq: int, expected: int, charges: Sequence[tuple[int, int]], state_seq: int
) -> int | None:
    """The balance the agent works out from (``seq``, ``expected``) and the batch's ``charges``
    ((seq, debit) of the meter's posted records, debits positive) when the meter's rating state
    is now at ``state_seq``; None when it cannot tell (no charges, a gap, a refused record)."""
    if not charges:
        return None
    ordered = sorted(charges)
    if [s for s, _ in ordered] != list(range(seq + 1, seq + 1 + len(ordered))):
        return None
    if ordered[-1][0] != state_seq:
        return None
    return expected - sum(debit for _, debit in ordered)


def after_batch(
    chain: Chain | None, charges: Sequence[tuple[int, int]], state_seq: int, balance: int
) -> tuple[Chain, bool]:
    """The chain after a batch that left the meter at ``state_seq`` and its account at
    ``balance``, and whether the step held (the agent works ``balance`` out alone)."""
    if chain is not None and derived_balance(chain.seq, chain.expected, charges,
                                             state_seq) == balance:  # fmt: skip
        points = (*chain.points, (state_seq, balance))[-CHAIN_MAX:]
        return replace(chain, points=points), True
    return Chain(((state_seq, balance),)), False


def after_state(
    chain: Chain | None, seq: int, balance: int, *, digest: str, command_id: str, now: datetime
) -> Chain:
    """The chain once a credit state (``seq``, ``balance``) is queued for the meter: blessed when
    the state is one of its points, a chain of the state's own otherwise."""
    if chain is not None:
        kept = tuple(p for p in chain.points if p[0] >= seq)
        if kept and kept[0] == (seq, balance):
            return replace(chain, points=kept, digest=digest, command_id=command_id, sent_at=now)
    return Chain(((seq, balance),), digest, command_id, now)
