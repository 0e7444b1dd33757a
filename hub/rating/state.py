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
from typing import Any

from hub.rating.fast import ScaledCarry
from protocol.apportion import dump_carry, load_carry


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
