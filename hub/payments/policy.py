"""The allocation policy (pure, versioned): how a payment is split among a customer's open
bills and, within a bill, among the providers (tiers) that charged on it.

Version ``1`` (the default): open bills are paid oldest first (period, then bill id), so
arrears always go before a newer bill. Within a bill, the policy's ``first_tiers`` (none in
``1``; the platform's fees in ``1-fees-first``) are paid in full first, in that order; the rest
goes to every provider in proportion to what it is still owed on the bill
(``protocol.apportion.split``, largest remainder). Each split is taken over the amounts still
owed, so the remainder of one partial payment is carried exactly into the next: no provider is
ever paid more than it charged, and a bill's providers are paid in full together. Whatever no
open bill takes is the payment's credit. ``allocations + credit == amount``, exactly.

A stored payment names its policy version; a new rule is a new version, never a change of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.apportion import split


@dataclass(frozen=True)
class Policy:
    version: str
    first_tiers: tuple[str, ...] = ()


POLICIES = {p.version: p for p in (Policy("1"), Policy("1-fees-first", ("platform",)))}
DEFAULT_POLICY = "1"


def policy(version: str) -> Policy:
    """The policy of ``version``; ValueError naming the known ones."""
    found = POLICIES.get(version)
    if found is None:
        raise ValueError(f"unknown allocation policy {version!r} (known: {', '.join(POLICIES)})")
    return found


@dataclass(frozen=True)
class Due:
    """What a provider is still owed on a bill (minor units, positive)."""

    provider: str
    tier: str
    remaining: int


@dataclass(frozen=True)
class OpenBill:
    id: int
    period: str  # YYYY-MM
    dues: tuple[Due, ...]


@dataclass(frozen=True)
class Allocation:
    bill: int
    provider: str
    tier: str
    amount: int


@dataclass(frozen=True)
class Split:
    allocations: tuple[Allocation, ...]
    credit: int


def allocate(amount: int, bills: Sequence[OpenBill], rules: Policy) -> Split:
    """Split ``amount`` (minor units, >= 0) among ``bills`` by ``rules``."""
    if amount < 0:
        raise ValueError("a payment cannot be negative")
    left = amount
    out: list[Allocation] = []
    for bill in sorted(bills, key=lambda b: (b.period, b.id)):
        if left == 0:
            break
        remaining = {d.provider: d.remaining for d in bill.dues if d.remaining > 0}
        tiers = {d.provider: d.tier for d in bill.dues}
        paid = dict.fromkeys(remaining, 0)
        for tier in rules.first_tiers:
            for provider in sorted(p for p in remaining if tiers[p] == tier):
                take = min(left, remaining[provider])
                paid[provider] += take
                remaining[provider] -= take
                left -= take
        owed = {p: v for p, v in remaining.items() if v > 0}
        if owed and left:
            take = min(left, sum(owed.values()))
            for provider, part in split(take, owed).items():
                paid[provider] += part
            left -= take
        out.extend(Allocation(bill.id, p, tiers[p], v) for p, v in sorted(paid.items()) if v)
    return Split(tuple(out), left)
