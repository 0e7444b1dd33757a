"""A meter's rating state between records: highest contiguous seq, carry, month-to-date energy.

Stored as JSON text in ``meter_carry.state`` (opaque to the ledger). ``seq`` is the highest seq
up to which every record was posted in order, so the carry and the month-to-date figure are
exactly those of the records ``<= seq`` applied in seq order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from typing import Any

from protocol.apportion import ScaledCarry, dump_carry, load_carry


@dataclass(frozen=True)
class MeterState:
    seq: int = 0
    carry: Mapping[str, Fraction] = field(default_factory=dict)  # a ScaledCarry once rated
    month: str | None = None  # "YYYY-MM" in the tariff's zone that ``mtd`` counts
    mtd: Fraction = Fraction(0)  # energy (base units) posted in ``month`` up to ``seq``
    register: int | None = None  # import_end of record ``seq``

    def dump(self) -> str:
        carry = self.carry
        dumped = carry.dump() if isinstance(carry, ScaledCarry) else dump_carry(carry)
        plain = (type(self.seq) is int and type(self.register) in (int, type(None))
                 and type(self.month) in (str, type(None)))  # fmt: skip
        if plain:
            return _dump_text(self.seq, dumped, self.month, self.mtd, self.register)
        data: dict[str, Any] = {"seq": self.seq, "carry": dumped}
        if self.month is not None:
            data["month"] = self.month
            data["mtd"] = f"{self.mtd.numerator}/{self.mtd.denominator}"
        if self.register is not None:
            data["register"] = self.register
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None) -> MeterState:
        if not text:
            return cls()
        data = json.loads(text)
        if not isinstance(data, dict) or "seq" not in data:
            # A bare carry mapping (what protocol.apportion.dump_carry writes).
            return cls(carry=load_carry(data or {}))
        return cls(
            seq=int(data["seq"]),
            carry=load_carry(data.get("carry", {})),
            month=data.get("month"),
            mtd=Fraction(data.get("mtd", "0")),
            register=data.get("register"),
        )

    def with_carry(self, carry: Mapping[str, Fraction]) -> MeterState:
        return replace(self, carry=carry)


def _dump_text(
    seq: int, carry: dict[str, str], month: str | None, mtd: Fraction, register: int | None
) -> str:
    """What ``MeterState.dump`` gets from ``json.dumps(..., sort_keys=True, separators=(",",
    ":"))`` for integer seq and register, written out directly: the hub dumps every meter it
    rates in every batch. Strings go through ``json.dumps`` (memoised: the same providers and
    months recur); the "n/d" values and integers need no escaping."""
    parts = ['{"carry":{']
    parts.append(",".join(f'{_json_str(p)}:"{carry[p]}"' for p in sorted(carry)))
    parts.append("}")
    if month is not None:
        parts.append(f',"month":{_json_str(month)},"mtd":"{mtd.numerator}/{mtd.denominator}"')
    if register is not None:
        parts.append(f',"register":{register}')
    parts.append(f',"seq":{seq}}}')
    return "".join(parts)


@lru_cache(maxsize=4096)
def _json_str(text: str) -> str:
    return json.dumps(text)
