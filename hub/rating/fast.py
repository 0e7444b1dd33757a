"""``protocol.apportion.apportion`` computed in integers over a common denominator.

The same algorithm and the same result (a hypothesis test compares them on random input), at
a fraction of the cost: Fraction arithmetic normalises by gcd on every operation, which made
apportioning the hub's most expensive step per record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from fractions import Fraction
from math import gcd, lcm

from protocol.apportion import Carry


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
        """``protocol.apportion.dump_carry(self)`` without building Fractions."""
        d = self.denominator
        out: dict[str, str] = {}
        for p, n in self.numerators.items():
            if n:
                g = gcd(n, d)
                out[p] = f"{n // g}/{d // g}"
        return out


def apportion_int(owed: Mapping[str, int], d: int) -> tuple[dict[str, int], dict[str, int]]:
    """Shares and carried numerators for amounts ``owed[p] / d`` (providers sorted by name)."""
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


def apportion_fast(
    amounts: Mapping[str, Fraction], carry: Mapping[str, Fraction]
) -> tuple[dict[str, int], Carry]:
    """Exactly ``protocol.apportion.apportion(amounts, carry)``."""
    if any(v < 0 for v in amounts.values()):
        raise ValueError("amounts owed cannot be negative")
    zero = Fraction(0)
    owed_f = {p: carry.get(p, zero) + amounts.get(p, zero) for p in set(amounts) | set(carry)}
    d = lcm(*(v.denominator for v in owed_f.values())) if owed_f else 1
    owed = {p: v.numerator * (d // v.denominator) for p, v in owed_f.items()}
    shares, rest = apportion_int(owed, d)
    return shares, {p: Fraction(n, d) for p, n in rest.items()}


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
