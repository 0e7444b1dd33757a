"""Plan the requests that read a set of registers: pure, no I/O.

Registers served by the same function are grouped into contiguous blocks, each no longer than
the model's ``max_registers_per_request``; ``max_gap`` lets a block span a few unmapped words
(off by default: many meters answer an exception for an address they do not map).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal

from hardware.regmap import MeterModel, Register

_WH_PER = {"kWh": 1000, "Wh": 1, "m3": 1000, "L": 1}


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` words (or bits) from ``address`` with ``function``."""

    function: str
    address: int
    count: int
    registers: tuple[Register, ...]

    @property
    def end(self) -> int:
        return self.address + self.count

    def words_of(self, reg: Register, data: list[int]) -> list[int]:
        """The slice of a block's response that holds ``reg``."""
        offset = reg.address - self.address
        return data[offset : offset + reg.width]


def plan(registers: Iterable[Register], max_count: int, max_gap: int = 0) -> list[Block]:
    """The fewest contiguous blocks (per function, in address order) that read ``registers``."""
    if max_count < 1:
        raise ValueError("max_count must be at least 1")
    by_function: dict[str, list[Register]] = {}
    for reg in registers:
        if reg.width > max_count:
            raise ValueError(f"register {reg.name} is wider than {max_count} words")
        by_function.setdefault(reg.function, []).append(reg)
    blocks: list[Block] = []
    for function in sorted(by_function):
        regs = sorted(set(by_function[function]), key=lambda r: (r.address, r.end))
        current: list[Register] = []
        start = end = 0
        for reg in regs:
            if current and reg.address <= end + max_gap and max(end, reg.end) - start <= max_count:
                current.append(reg)
                end = max(end, reg.end)
                continue
            if current:
                blocks.append(Block(function, start, end - start, tuple(current)))
            current, start, end = [reg], reg.address, reg.end
        if current:
            blocks.append(Block(function, start, end - start, tuple(current)))
    return blocks


def plan_model(model: MeterModel, names: Iterable[str], max_gap: int = 0) -> list[Block]:
    """Blocks reading the named registers of ``model`` (names the model lacks are skipped)."""
    regs = [model.register(n) for n in names if model.has(n)]
    return plan(regs, model.max_registers_per_request, max_gap)


def base_unit_decoder(
    model: MeterModel, reg: Register, wh_per_m3: Decimal | None = None
) -> Callable[[list[int]], int]:
    """``words -> integer base units`` for an energy register, same result as
    ``model.base_units`` (``wh_per_m3``: a gas volume's calorific conversion); unsigned integer
    registers whose scale makes whole Wh (the DDS238's 1/100 kWh is 10 Wh) skip the Decimal
    arithmetic, which matters at thousands of reads/s."""
    factor = reg.scale * _WH_PER.get(reg.unit, 0)
    if model.converts_volume(reg) and wh_per_m3 is not None:
        factor = factor * wh_per_m3 / 1000
    if reg.type not in ("u16", "u32", "u64") or factor <= 0 or factor != int(factor):
        return lambda words: model.base_units(reg, words, wh_per_m3=wh_per_m3)
    whole = int(factor)
    big = model.order_of(reg) == "big"
    width = reg.width

    def decode(words: list[int]) -> int:
        if len(words) != width or any(not 0 <= w <= 0xFFFF for w in words):
            return model.base_units(reg, words, wh_per_m3=wh_per_m3)  # the codec's error
        raw = 0
        for w in words if big else reversed(words):
            raw = (raw << 16) | w
        return raw * whole

    return decode
