"""Pure conversion between Modbus register words and values, as a register map declares them.

No I/O here: the agent and firmware_sim both turn words into values (and back) with these.
"""

import math
import struct
from decimal import Decimal
from typing import Literal

RegisterType = Literal["u16", "s16", "u32", "s32", "u64", "float32", "float64", "bool"]
WordOrder = Literal["big", "little"]

WIDTH: dict[str, int] = {
    "bool": 1,
    "u16": 1,
    "s16": 1,
    "u32": 2,
    "s32": 2,
    "u64": 4,
    "float32": 2,
    "float64": 4,
}

_STRUCT = {
    "u16": ">H",
    "s16": ">h",
    "u32": ">I",
    "s32": ">i",
    "u64": ">Q",
    "float32": ">f",
    "float64": ">d",
}


class CodecError(ValueError):
    """Words that cannot be a value of the declared type (wrong count, NaN, out of range)."""


def decode_raw(words: list[int], rtype: str, word_order: WordOrder = "big") -> int | float:
    """Words (high word first unless ``word_order`` is little) to the register's raw number."""
    if len(words) != WIDTH[rtype]:
        raise CodecError(f"{rtype} needs {WIDTH[rtype]} words, got {len(words)}")
    if rtype == "bool":
        return 1 if words[0] else 0
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise CodecError(f"register word out of range: {words}")
    ordered = list(words) if word_order == "big" else list(reversed(words))
    raw = b"".join(w.to_bytes(2, "big") for w in ordered)
    value: int | float = struct.unpack(_STRUCT[rtype], raw)[0]
    if isinstance(value, float) and not math.isfinite(value):
        raise CodecError(f"{rtype} register holds a non-finite value")
    return value


def encode_raw(value: int | float, rtype: str, word_order: WordOrder = "big") -> list[int]:
    """The register's raw number to words, the inverse of :func:`decode_raw`."""
    if rtype == "bool":
        return [1 if value else 0]
    fmt = _STRUCT[rtype]
    try:
        packed = struct.pack(fmt, value if rtype.startswith("float") else int(value))
    except struct.error as exc:
        raise CodecError(f"{value!r} does not fit {rtype}") from exc
    words = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, len(packed), 2)]
    return words if word_order == "big" else list(reversed(words))


def scaled(raw: int | float, scale: Decimal) -> Decimal:
    """The engineering value of a raw register number, exact for integer registers."""
    if isinstance(raw, float):
        return Decimal(repr(raw)) * scale
    return Decimal(raw) * scale
