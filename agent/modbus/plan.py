"""Plan the requests that read a set of registers: pure, no I/O.

Registers served by the same function are grouped into contiguous blocks, each no longer than
the model's ``max_registers_per_request``; ``max_gap`` lets a block span a few unmapped words
(off by default: many meters answer an exception for an address they do not map).
``plan_model(..., bridge=True)`` also reads the registers the model maps between two wanted
ones, when they fill the gap wholly and the span fits one request: one request instead of two,
and every word read is one the meter maps (the DDS238's energy and current, with the voltage
between them).
"""

from __future__ import annotations

import itertools
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


def plan_model(
    model: MeterModel, names: Iterable[str], max_gap: int = 0, *, bridge: bool = False
) -> list[Block]:
    """Blocks reading the named registers of ``model`` (names the model lacks are skipped);
    ``bridge``: with the mapped registers that join two of them into one request."""
    regs = [model.register(n) for n in names if model.has(n)]
    if bridge:
        regs = regs + bridging(model, regs)
    return plan(regs, model.max_registers_per_request, max_gap)


def bridging(model: MeterModel, regs: list[Register]) -> list[Register]:
    """The registers of ``model`` that fill the gap between two of ``regs`` (same function,
    next in address order) wholly, where the two and the gap fit one request."""
    out: list[Register] = []
    for function in sorted({r.function for r in regs}):
        mine = sorted((r for r in regs if r.function == function), key=lambda r: r.address)
        for a, b in itertools.pairwise(mine):
            if b.address <= a.end or b.end - a.address > model.max_registers_per_request:
                continue
            between = sorted(
                (r for r in model.registers
                 if r.function == function and r.address >= a.end and r.end <= b.address),
                key=lambda r: r.address,
            )  # fmt: skip
            covered = a.end
            for r in between:
                if r.address != covered:
                    break
                covered = r.end
            if covered == b.address:
                out += between
    return out


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
