"""From a meter's reading to the words of any register map (pure).

Registers are matched to quantities by unit and name, so any map in ``hardware/registers``
works: energy units (kWh, Wh, m3, L) read the import energy ("export" in the name reads 0),
V, A, W, VA, var, Hz the electrical values (a ``_l1``/``_l2``/``_l3`` suffix means one phase),
a ``power_factor`` the power factor, the model's relay register the relay state. Anything
else reads 0.
"""

import math
from fractions import Fraction

from firmware_sim.meter import Reading
from hardware.codec import encode_raw
from hardware.regmap import MeterModel, Register

Number = Fraction | float | int

# Register unit -> base units (Wh or L) per register unit.
ENERGY_UNITS = {"kWh": 1000, "Wh": 1, "m3": 1000, "L": 1}
_RANGE = {
    "u16": (0, 0xFFFF),
    "s16": (-0x8000, 0x7FFF),
    "u32": (0, 0xFFFFFFFF),
    "s32": (-0x80000000, 0x7FFFFFFF),
    "u64": (0, 0xFFFFFFFFFFFFFFFF),
    "bool": (0, 1),
}
_PHASE_SUFFIXES = ("_l1", "_l2", "_l3")


def quantity(model: MeterModel, reg: Register, reading: Reading, relay_on: bool) -> Number:
    """The engineering value (in ``reg.unit``) that ``reg`` shows for ``reading``."""
    if model.relay is not None and reg.name == model.relay.register_name:
        return model.relay.on if relay_on else model.relay.off
    name, unit = reg.name.lower(), reg.unit
    per_phase = name.endswith(_PHASE_SUFFIXES)
    if unit in ENERGY_UNITS:
        if "export" in name:
            return 0
        return reading.energy_wh / ENERGY_UNITS[unit]
    if unit == "V":
        return reading.voltage_v
    if unit == "A":
        return reading.current_a
    if unit == "W":
        return reading.power_w / reading.phases if per_phase else reading.power_w
    if unit == "VA":
        return reading.apparent_va / (reading.phases if per_phase else 1)
    if unit == "var":
        return reading.reactive_var / (reading.phases if per_phase else 1)
    if unit == "Hz":
        return reading.frequency_hz
    if "power_factor" in name or name in ("pf", "cos_phi"):
        return reading.power_factor
    return 0


def encode(model: MeterModel, reg: Register, value: Number) -> list[int]:
    """Words for ``value`` (in ``reg.unit``) in ``reg``'s type, scale and word order.

    Integer registers round down energy (a meter never shows energy not yet used) and round
    other values to nearest; values that do not fit the type are clamped to its range.
    """
    if reg.type.startswith("float"):
        return encode_raw(
            float(Fraction(value) / Fraction(reg.scale)), reg.type, model.order_of(reg)
        )
    exact = Fraction(value) / Fraction(reg.scale)
    raw = math.floor(exact) if reg.unit in ENERGY_UNITS else round(exact)
    low, high = _RANGE[reg.type]
    return encode_raw(min(max(raw, low), high), reg.type, model.order_of(reg))
