"""A meter's rating state between records: highest contiguous seq, carry, month-to-date energy,
and where its register stands.

Stored as JSON text in ``meter_carry.state`` (opaque to the ledger). ``seq`` is the highest seq
up to which every record was handled in order (posted, or refused by the register rule), so the
carry and the month-to-date figure are exactly those of the records ``<= seq`` applied in seq
order. ``register``, ``until`` and ``segment`` describe the meter's newest posted record: its
``import_end``, its interval's end and its register segment (``hub.rating.register``); its seq
is ``seq``, or ``posted`` when records after it were refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
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
    register: int | None = None  # import_end of the newest posted record
    segment: int = 0  # register segment of the newest posted record
    until: datetime | None = None  # interval end of the newest posted record
    posted: int | None = None  # seq of the newest posted record, if not ``seq``
    # per provider, the remainder of its priority fees not yet posted (hub.rating.pricing)
    fees: Mapping[str, Fraction] = field(default_factory=dict)

    @property
    def newest(self) -> int:
        """The seq of the meter's newest posted record (if it has one)."""
        return self.seq if self.posted is None else self.posted

    def dump(self) -> str:
        carry = self.carry
        dumped = carry.dump() if isinstance(carry, ScaledCarry) else dump_carry(carry)
        until = None if self.until is None else self.until.isoformat()
        plain = (type(self.seq) is int and type(self.register) in (int, type(None))
                 and type(self.month) in (str, type(None))
                 and type(self.segment) is int
                 and type(self.posted) in (int, type(None)) and not self.fees)  # fmt: skip
        if plain:
            return _dump_text(self.seq, dumped, self.month, self.mtd, self.register,
                              segment=self.segment, until=until, posted=self.posted)  # fmt: skip
        data: dict[str, Any] = {"seq": self.seq, "carry": dumped}
        if self.month is not None:
            data["month"] = self.month
            data["mtd"] = f"{self.mtd.numerator}/{self.mtd.denominator}"
        if self.register is not None:
            data["register"] = self.register
        if self.posted is not None:
            data["posted"] = self.posted
        if self.segment:
            data["segment"] = self.segment
        if until is not None:
            data["until"] = until
        if self.fees:
            data["fees"] = dump_carry(self.fees)
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
            segment=int(data.get("segment", 0)),
            until=datetime.fromisoformat(data["until"]) if data.get("until") else None,
            posted=data.get("posted"),
            fees=load_carry(data.get("fees", {})),
        )

    def with_carry(self, carry: Mapping[str, Fraction]) -> MeterState:
        return replace(self, carry=carry)


def _dump_text(
    seq: int,
    carry: dict[str, str],
    month: str | None,
    mtd: Fraction,
    register: int | None,
    *,
    segment: int = 0,
    until: str | None = None,
    posted: int | None = None,
) -> str:
    """What ``MeterState.dump`` gets from ``json.dumps(..., sort_keys=True, separators=(",",
    ":"))`` for integer seq and register, written out directly: the hub dumps every meter it
    rates in every batch. Strings go through ``json.dumps`` (memoised: the same providers and
    months recur); the "n/d" values, integers and ISO times need no escaping."""
    parts = ['{"carry":{']
    parts.append(",".join(f'{_json_str(p)}:"{carry[p]}"' for p in sorted(carry)))
    parts.append("}")
    if month is not None:
        parts.append(f',"month":{_json_str(month)},"mtd":"{mtd.numerator}/{mtd.denominator}"')
    if posted is not None:
        parts.append(f',"posted":{posted}')
    if register is not None:
        parts.append(f',"register":{register}')
    if segment:
        parts.append(f',"segment":{segment}')
    parts.append(f',"seq":{seq}')
    if until is not None:
        parts.append(f',"until":"{until}"')
    parts.append("}")
    return "".join(parts)


@lru_cache(maxsize=4096)
def _json_str(text: str) -> str:
    return json.dumps(text)
