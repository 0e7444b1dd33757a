"""Bill lines from ledger postings (pure): nothing is priced here, every amount is a ledger
line's amount.

An entry's effect on a customer's account becomes :class:`Item` s: for a charge (usage,
standing, subscription, or a reversal of one) one item per provider the entry credited, with the
provider's share of the customer's debit; anything else (a top-up, an alternate draw, a
transfer) is a payment item. A meter shared by several payers: each payer's debit is split among
the providers by their credits (largest remainder), so a customer's items sum to its debit.

:func:`compose` makes a bill's lines for a period: per line key and month, what the ledger
holds now minus what earlier bills stated. The period's own month gives the charge lines; an
earlier month that changed since its bill (usage that arrived late) gives a dated adjustment
line. So every ledger line is billed exactly once, whenever it was committed, and no issued bill
changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from hub.billing.periods import Period
from hub.ledger.accounts import provider_account_id
from protocol.apportion import split

TIER_ORDER = {"generation": 0, "transmission": 1, "distribution": 2, "retail": 3, "platform": 4}
# base units per displayed unit (usage is stored in Wh or litres)
UNIT_SCALE = {"kWh": 1000, "m3": 1000, "day": 1, "month": 1}


@dataclass(frozen=True, order=True)
class LineKey:
    """What one line is about: a service charged by one provider in one unit."""

    service: str
    provider: str
    tier: str
    unit: str

    def order(self) -> tuple[str, int, str, str]:
        return (self.service, TIER_ORDER.get(self.tier, 9), self.provider, self.unit)


@dataclass(frozen=True)
class Item:
    """One posting's effect on one customer: ``key`` None is a payment (``amount`` positive:
    the customer's account was credited); otherwise a charge (``amount`` positive: owed)."""

    customer: str
    at: datetime
    key: LineKey | None
    quantity: int
    amount: int
    rate: str | None = None


@dataclass(frozen=True)
class EntryView:
    """A journal entry as billing sees it. ``charge``: usage, standing, subscription or a
    reversal of one (``quantity`` then negative). ``rates``: each provider's rate as a decimal
    string, when the tariff names one."""

    id: int
    at: datetime
    charge: bool
    service: str
    unit: str
    quantity: int
    lines: Sequence[tuple[str, int]]
    rates: Mapping[str, str] = field(default_factory=dict)


def unit_of(service: str, kind: str) -> str:
    """The unit a charge of ``kind`` for ``service`` is counted in."""
    if kind == "standing":
        return "day"
    if kind == "subscription":
        return "month"
    return "m3" if service == "water" else "kWh"


def display_quantity(quantity: int, unit: str) -> str:
    """A base-unit quantity in its displayed unit, exactly (``12345`` Wh -> ``"12.345"``)."""
    scale = UNIT_SCALE.get(unit, 1)
    if scale == 1:
        return str(quantity)
    return str((Decimal(quantity) / scale).quantize(Decimal(1) / scale))


def _signed_split(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """``split`` for a total and weights of any sign (weights taken as magnitudes)."""
    magnitudes = {k: abs(w) for k, w in weights.items()}
    if not any(magnitudes.values()):
        return dict.fromkeys(weights, 0)
    parts = split(abs(total), magnitudes)
    return {k: v if total >= 0 else -v for k, v in parts.items()}


def without_fees(
    lines: Sequence[tuple[str, int]], fees: Mapping[str, int], sign: int = 1
) -> list[tuple[str, int]]:
    """A usage entry's lines without its priority fees (``fees``: provider -> amount, from the
    entry's ``priority_fees``): each provider's −fee line and the platform's line of their
    sum, which are between the providers and the platform, not the customer's charge.
    ``sign`` -1 for a reversal (its lines negated)."""
    out = list(lines)
    drop = [(provider_account_id(p), -sign * int(v)) for p, v in sorted(fees.items())]
    total = sign * sum(int(v) for v in fees.values())
    for account, amount in out:
        if account.startswith("platform:") and amount == total:
            drop.append((account, amount))
            break
    for line in drop:
        if line in out:
            out.remove(line)
    return out


def entry_items(
    entry: EntryView, customers: Mapping[str, object], revenue: Mapping[str, tuple[str, str]]
) -> list[Item]:
    """The entry's items for each customer account it touches (see the module docstring).
    ``revenue``: provider account id -> (provider id, tier)."""
    per_account: dict[str, int] = {}
    for account, amount in entry.lines:
        per_account[account] = per_account.get(account, 0) + amount
    mine = sorted(a for a in per_account if a in customers)
    if not entry.charge:
        return [Item(a, entry.at, None, 0, per_account[a]) for a in mine if per_account[a]]
    credits = {a: v for a, v in per_account.items() if a in revenue}
    payers = {a: -v for a, v in per_account.items() if a not in revenue}
    owed = sum(payers.values())
    quantities = (
        {a: entry.quantity for a in payers} if len(payers) == 1 else
        _signed_split(entry.quantity, payers)
    )  # fmt: skip
    out: list[Item] = []
    for customer in mine:
        charge = payers[customer]
        shares = dict(credits) if charge == owed else _signed_split(charge, credits)
        for account in sorted(shares):
            provider, tier = revenue[account]
            key = LineKey(entry.service, provider, tier, entry.unit)
            out.append(Item(customer, entry.at, key, quantities.get(customer, 0), shares[account],
                            entry.rates.get(provider)))  # fmt: skip
    return out


@dataclass(frozen=True)
class Line:
    """A bill line: ``charge`` (the period's own), ``adjustment`` (late for ``for_period``) or
    ``payment`` (payments counted for ``for_period``; ``key`` None)."""

    kind: str
    for_period: Period
    key: LineKey | None
    quantity: int
    amount: int
    rate: str | None = None


Slot = tuple[LineKey | None, Period]
Totals = dict[Slot, tuple[int, int]]  # (quantity, amount)
Rates = dict[Slot, set[str | None]]


def month_totals(items: Iterable[Item], zone: ZoneInfo, floor: Period) -> tuple[Totals, Rates]:
    """Per (key, month) the items' quantity and amount; months before ``floor`` count as
    ``floor`` (the customer's first bill took everything before it). Also each key and
    month's rates seen."""
    totals: Totals = {}
    rates: Rates = {}
    for item in items:
        month = max(Period.of(item.at, zone), floor)
        slot = (item.key, month)
        q, a = totals.get(slot, (0, 0))
        totals[slot] = (q + item.quantity, a + item.amount)
        rates.setdefault(slot, set()).add(item.rate)
    return totals, rates


def compose(
    period: Period,
    ledger: Totals,
    billed: Totals,
    rates: Mapping[Slot, set[str | None]] | None = None,
) -> list[Line]:
    """The lines of ``period``'s bill: ``ledger`` (per key and month, up to the end of the
    period) minus ``billed`` (what earlier bills stated per key and month)."""
    out: list[Line] = []
    for slot in set(ledger) | set(billed):
        key, month = slot
        if month > period:
            continue
        q0, a0 = ledger.get(slot, (0, 0))
        q1, a1 = billed.get(slot, (0, 0))
        quantity, amount = q0 - q1, a0 - a1
        if quantity == 0 and amount == 0:
            continue
        seen = (rates or {}).get(slot, set())
        rate = next(iter(seen)) if len(seen) == 1 else None
        kind = "payment" if key is None else "charge" if month == period else "adjustment"
        out.append(Line(kind, month, key, quantity, amount, rate))
    out.sort(key=lambda line: (line.key is None, line.key.order() if line.key else (),
                               line.for_period, line.kind))  # fmt: skip
    return out


@dataclass(frozen=True)
class Sums:
    charges: int
    payments: int


def sums(lines: Iterable[Line]) -> Sums:
    charges = payments = 0
    for line in lines:
        if line.kind == "payment":
            payments += line.amount
        else:
            charges += line.amount
    return Sums(charges, payments)
