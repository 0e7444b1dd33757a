"""Turn exact per-provider amounts into whole minor units, carrying the remainder per meter.

The customer is debited the whole part of everything owed so far; that debit is shared among the
providers by what each is owed, and whatever fraction is left stays in the carry for the next
record. So nothing drifts: over any run, the debits equal the exact charge within one minor unit,
no share is negative, and the shares always sum exactly to the debit.
"""

from collections.abc import Mapping
from fractions import Fraction
from math import floor

Carry = dict[str, Fraction]


def apportion(
    amounts: Mapping[str, Fraction], carry: Mapping[str, Fraction]
) -> tuple[dict[str, int], Carry]:
    """``(shares, new_carry)`` for ``amounts`` owed on top of the ``carry`` from earlier records."""
    if any(v < 0 for v in amounts.values()):
        raise ValueError("amounts owed cannot be negative")
    providers = sorted(set(amounts) | set(carry))
    owed = {p: carry.get(p, Fraction(0)) + amounts.get(p, Fraction(0)) for p in providers}
    debit = floor(sum(owed.values(), Fraction(0)))
    shares = dict.fromkeys(providers, 0)
    positive = sum((v for v in owed.values() if v > 0), Fraction(0))
    if debit > 0 and positive > 0:
        for p in providers:
            if owed[p] > 0:
                shares[p] = floor(owed[p] * debit / positive)
    for _ in range(debit - sum(shares.values())):
        p = max(providers, key=lambda q: (owed[q] - shares[q], q))
        shares[p] += 1
    return shares, {p: owed[p] - shares[p] for p in providers}


def dump_carry(carry: Mapping[str, Fraction]) -> dict[str, str]:
    return {p: f"{v.numerator}/{v.denominator}" for p, v in carry.items() if v}


def load_carry(data: Mapping[str, str]) -> Carry:
    return {p: Fraction(v) for p, v in data.items()}


def split(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """``total`` minor units split by integer ``weights`` exactly (largest remainder, ties by name).

    A party with weight 0 pays nothing; at least one weight must be positive.
    """
    if total < 0 or any(w < 0 for w in weights.values()):
        raise ValueError("total and weights cannot be negative")
    whole = sum(weights.values())
    if whole == 0:
        raise ValueError("at least one party must contribute")
    parts = {p: total * w // whole for p, w in weights.items()}
    order = sorted(weights, key=lambda p: (-(total * weights[p] % whole), p))
    for p in order[: total - sum(parts.values())]:
        parts[p] += 1
    return parts
