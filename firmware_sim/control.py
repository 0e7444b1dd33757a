"""The simulation-control block of holding registers at 0x9000 (pure layout and codec).

Every simulated device serves it, whatever its model, so any Modbus client can steer the
simulation. Multi-word values are big-endian (high word first). The table is documented in
``firmware_sim/README.md``.
"""

from dataclasses import dataclass
from enum import IntEnum

CONTROL_BASE = 0x9000


class FaultMode(IntEnum):
    NONE = 0
    NO_RESPONSE = 1
    EXCEPTION = 2
    BAD_CRC = 3
    SLOW = 4


@dataclass(frozen=True)
class Field:
    name: str
    address: int
    words: int
    writable: bool

    @property
    def end(self) -> int:
        return self.address + self.words


FIELDS = (
    Field("load_w", 0x9000, 2, True),
    Field("speed_centi", 0x9002, 1, True),
    Field("fault_mode", 0x9003, 1, True),
    Field("fault_param", 0x9004, 1, True),
    Field("tamper", 0x9005, 1, True),
    Field("reset_energy", 0x9006, 1, True),
    Field("reset_value_wh", 0x9007, 2, True),
    Field("relay", 0x9009, 1, True),
    Field("power_factor_milli", 0x900A, 1, True),
    Field("energy_wh", 0x900B, 4, False),
    Field("sim_time_s", 0x900F, 4, False),
    Field("speed_centi_32", 0x9013, 2, True),
    Field("requests", 0x9015, 1, False),
    Field("tamper_stuck", 0x9016, 1, True),
)
CONTROL_END = FIELDS[-1].end
CONTROL_COUNT = CONTROL_END - CONTROL_BASE
_BY_NAME = {f.name: f for f in FIELDS}


def in_control(address: int, count: int = 1) -> bool:
    """Whether ``[address, address + count)`` lies inside the control block."""
    return address >= CONTROL_BASE and address + count <= CONTROL_END


def touches_control(address: int, count: int = 1) -> bool:
    return address < CONTROL_END and address + count > CONTROL_BASE


def to_words(values: dict[str, int]) -> list[int]:
    """The whole block as words, from field values (missing fields read 0)."""
    words = [0] * CONTROL_COUNT
    for f in FIELDS:
        value = values.get(f.name, 0)
        value = min(max(value, 0), (1 << (16 * f.words)) - 1)
        for i in range(f.words):
            shift = 16 * (f.words - 1 - i)
            words[f.address - CONTROL_BASE + i] = (value >> shift) & 0xFFFF
    return words


def written_fields(
    current: list[int], address: int, values: list[int]
) -> tuple[dict[str, int], list[str]]:
    """Overlay a write on the current block: (the fields it touches with their new values,
    the read-only fields it touches). A write covering one word of a two-word field combines
    with the other word's current value."""
    words = list(current)
    for i, value in enumerate(values):
        words[address - CONTROL_BASE + i] = value
    end = address + len(values)
    touched: dict[str, int] = {}
    readonly: list[str] = []
    for f in FIELDS:
        if f.address < end and f.end > address:
            if not f.writable:
                readonly.append(f.name)
                continue
            value = 0
            for word in words[f.address - CONTROL_BASE : f.end - CONTROL_BASE]:
                value = (value << 16) | word
            touched[f.name] = value
    return touched, readonly


def field(name: str) -> Field:
    return _BY_NAME[name]
