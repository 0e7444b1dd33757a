"""Turn exact per-provider amounts into whole minor units, carrying the remainder per meter.

The customer is debited the whole part of everything owed so far; that debit is shared among the
providers by what each is owed, and whatever fraction is left stays in the carry for the next
record. So nothing drifts: over any run, the debits equal the exact charge within one minor unit,
no share is negative, and the shares always sum exactly to the debit.

One implementation, used by the agent and the hub alike: the amounts are brought over a common
denominator and apportioned in integers (:func:`apportion_int`); Fraction arithmetic, which
normalises by gcd on every operation, would make apportioning the hub's most expensive step per
record. :func:`apportion_linear` is the hub's usual case (integer rates times energy) without
building a Fraction at all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from fractions import Fraction
from math import gcd, lcm

Carry = dict[str, Fraction]


class ScaledCarry(Mapping[str, Fraction]):
    """A carry as integer numerators over one denominator: ``{p: Fraction(n[p], d)}``.

    What ``apportion_linear`` returns, so that rating a meter's next record reads the numerators
    directly instead of building (and gcd-normalising) a Fraction per provider per record and
    taking them apart again. Read as a mapping it equals that dict of Fractions, in the same
    key order."""

    __slots__ = ("denominator", "numerators")

    def __init__(self, denominator: int, numerators: dict[str, int]) -> None:
        self.denominator = denominator
        self.numerators = numerators

    def __getitem__(self, provider: str) -> Fraction:
        return Fraction(self.numerators[provider], self.denominator)

    def __iter__(self) -> Iterator[str]:
        return iter(self.numerators)

    def __len__(self) -> int:
        return len(self.numerators)

    def __repr__(self) -> str:
        return f"ScaledCarry({dict(self)!r})"

    def dump(self) -> dict[str, str]:
        """``dump_carry(self)`` without building Fractions."""
        d = self.denominator
        out: dict[str, str] = {}
        for p, n in self.numerators.items():
            if n:
                g = gcd(n, d)
                out[p] = f"{n // g}/{d // g}"
        return out


def apportion(
    amounts: Mapping[str, Fraction], carry: Mapping[str, Fraction]
) -> tuple[dict[str, int], Carry]:
    """``(shares, new_carry)`` for ``amounts`` owed on top of the ``carry`` from earlier records."""
    if any(v < 0 for v in amounts.values()):
        raise ValueError("amounts owed cannot be negative")
    zero = Fraction(0)
    owed_f = {p: carry.get(p, zero) + amounts.get(p, zero) for p in set(amounts) | set(carry)}
    d = lcm(*(v.denominator for v in owed_f.values())) if owed_f else 1
    owed = {p: v.numerator * (d // v.denominator) for p, v in owed_f.items()}
    shares, rest = apportion_int(owed, d)
    return shares, {p: Fraction(n, d) for p, n in rest.items()}


def apportion_int(owed: Mapping[str, int], d: int) -> tuple[dict[str, int], dict[str, int]]:
    """Shares and carried numerators for amounts ``owed[p] / d`` (providers sorted by name).

    The debit is the whole part of the sum; each provider owed something positive gets its
    proportional share rounded down, and each unit left goes to the largest remainder."""
    providers = sorted(owed)
    debit = sum(owed.values()) // d
    shares = dict.fromkeys(providers, 0)
    positive = sum(v for v in owed.values() if v > 0)
    if debit > 0 and positive > 0:
        for p in providers:
            if owed[p] > 0:
                shares[p] = owed[p] * debit // positive
    rest = {p: owed[p] - shares[p] * d for p in providers}
    # Each unit left goes to the largest remainder, a tie to the later name: ``max`` keeps the
    # first maximum it meets, so it scans the names from the last.
    latest_first = providers[::-1]
    for _ in range(debit - sum(shares.values())):
        p = max(latest_first, key=rest.__getitem__)
        shares[p] += 1
        rest[p] -= d
    return shares, rest


def apportion_linear(
    rates: Mapping[str, int], rates_d: int, energy: int, carry: Mapping[str, Fraction]
) -> tuple[dict[str, int], ScaledCarry]:
    """``apportion({p: rates[p] * energy / rates_d}, carry)`` without building Fractions.

    The result is the same whatever common denominator the sums are taken over (every step of
    ``apportion_int`` scales with it), so a ``ScaledCarry`` is used as it stands."""
    if isinstance(carry, ScaledCarry) and carry.denominator == rates_d:
        # The usual case: the meter's last record was rated with the same rates.
        owed = {p: r * energy for p, r in rates.items()}
        for p, n in carry.numerators.items():
            owed[p] = owed.get(p, 0) + n
        shares, rest = apportion_int(owed, rates_d)
        return shares, ScaledCarry(rates_d, rest)
    if isinstance(carry, ScaledCarry):
        d = lcm(rates_d, carry.denominator)
        numerators = carry.numerators
        carry_scale = d // carry.denominator
    else:
        d = lcm(rates_d, *(c.denominator for c in carry.values()))
        numerators = {p: c.numerator * (d // c.denominator) for p, c in carry.items()}
        carry_scale = 1
    scale = d // rates_d
    owed = {p: r * scale * energy for p, r in rates.items()}
    for p, n in numerators.items():
        owed[p] = owed.get(p, 0) + n * carry_scale
    shares, rest = apportion_int(owed, d)
    return shares, ScaledCarry(d, rest)


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
