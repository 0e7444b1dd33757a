"""One simulated device on the bus (pure): its register map, physics and control block.

Requests arrive as (function code, address, count or values) and are answered with words,
bits, or a Modbus exception code, exactly as the device's register map and the meter's
behaviour dictate. No Modbus library import here: the server adapts this to pymodbus.
"""

import logging
from dataclasses import dataclass
from fractions import Fraction

from firmware_sim import control
from firmware_sim.clock import NS_PER_S, SimClock
from firmware_sim.control import FaultMode
from firmware_sim.errors import ConfigError
from firmware_sim.meter import Meter
from firmware_sim.registers import encode, quantity
from hardware.regmap import MeterModel, Register

log = logging.getLogger(__name__)

ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04

FUNCTION_OF = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete",
    3: "holding",
    6: "holding",
    16: "holding",
    22: "holding",
    23: "holding",
    4: "input",
}
_BITS = ("coil", "discrete")
_CONTROL_WRITES = (6, 16, 23)


@dataclass(frozen=True)
class Block:
    """The addresses a device serves for one function: ``[first, end)``, gaps read as 0."""

    first: int
    end: int
    registers: tuple[Register, ...]


class Device:
    """A meter (with physics) or a relay module (coils only) at one unit id."""

    def __init__(self, unit: int, model: MeterModel, clock: SimClock, meter: Meter | None) -> None:
        if not 1 <= unit <= 247:
            raise ConfigError("unit", f"{unit}: must be 1 to 247")
        self.unit = unit
        self.model = model
        self.clock = clock
        self.meter = meter
        self.relay_on = True  # the device's own relay (a virtual breaker if it has none)
        self.feed_on = True  # the supply upstream (relay-module channels), set by the bus
        self.fault_mode = FaultMode.NONE
        self.fault_param = 0
        self.reset_value_wh = 0
        self.requests = 0
        self.bits: dict[int, bool] = {
            reg.address: _initial_bit(model, reg)
            for reg in model.registers
            if reg.function in _BITS
        }
        self.blocks: dict[str, Block] = {}
        for function in ("coil", "discrete", "holding", "input"):
            regs = tuple(sorted((r for r in model.registers if r.function == function), key=_addr))
            if regs:
                self.blocks[function] = Block(regs[0].address, max(r.end for r in regs), regs)
        holding = self.blocks.get("holding")
        if holding and holding.first < control.CONTROL_END and holding.end > control.CONTROL_BASE:
            raise ConfigError("--model", f"{model.model} uses the control block 0x9000")

    # ------------------------------------------------------------------ reads
    def read(self, fc: int, address: int, count: int) -> list[int] | list[bool] | int:
        function = FUNCTION_OF.get(fc)
        if function is None:
            return ILLEGAL_FUNCTION
        if function == "holding" and control.touches_control(address, count):
            if not control.in_control(address, count):
                return ILLEGAL_ADDRESS
            start = address - control.CONTROL_BASE
            return self.control_words()[start : start + count]
        if count > self.model.max_registers_per_request:
            return ILLEGAL_VALUE  # the device's own limit, checked first as Modbus orders it
        block = self.blocks.get(function)
        if block is None or address < block.first or address + count > block.end:
            return ILLEGAL_ADDRESS
        if function in _BITS:
            return [self.bits.get(a, False) for a in range(address, address + count)]
        return self._words(block, address, count)

    def _words(self, block: Block, address: int, count: int) -> list[int]:
        words = [0] * count
        end = address + count
        overlapping = [r for r in block.registers if r.address < end and r.end > address]
        if not overlapping:
            return words
        reading = self.meter.reading(self.clock.now_ns()) if self.meter else None
        for reg in overlapping:
            if reading is None:
                value: Fraction | float | int = self._relay_value() if self._is_relay(reg) else 0
            else:
                value = quantity(self.model, reg, reading, self.relay_on)
            for i, word in enumerate(encode(self.model, reg, value)):
                if address <= reg.address + i < end:
                    words[reg.address + i - address] = word
        return words

    # ----------------------------------------------------------------- writes
    def write(self, fc: int, address: int, values: list[int] | list[bool]) -> int | None:
        function = FUNCTION_OF.get(fc)
        if function is None or function in ("input", "discrete") or fc == 22:
            return ILLEGAL_FUNCTION
        count = len(values)
        if function == "holding" and control.touches_control(address, count):
            if not control.in_control(address, count) or fc not in _CONTROL_WRITES:
                return ILLEGAL_ADDRESS
            return self._write_control(address, [int(v) for v in values])
        block = self.blocks.get(function)
        if block is None or address < block.first or address + count > block.end:
            return ILLEGAL_ADDRESS
        if function == "coil":
            return self._write_bits(fc, address, [bool(v) for v in values])
        return self._write_registers(fc, address, [int(v) for v in values])

    def _write_bits(self, fc: int, address: int, values: list[bool]) -> int | None:
        if fc not in (5, 15):
            return ILLEGAL_FUNCTION
        if any(a not in self.bits for a in range(address, address + len(values))):
            return ILLEGAL_ADDRESS
        for i, value in enumerate(values):
            if self.bits[address + i] != value:
                log.info("unit %d: coil %d %s", self.unit, address + i, "on" if value else "off")
            self.bits[address + i] = value
            if self.model.relay and self._is_relay_address(address + i):
                self.set_relay(value)
        return None

    def _write_registers(self, fc: int, address: int, values: list[int]) -> int | None:
        relay = self.model.relay
        if relay is None:
            return ILLEGAL_ADDRESS
        reg = self.model.register(relay.register_name)
        end = address + len(values)
        if reg.function != "holding" or not (address <= reg.address and reg.end <= end):
            return ILLEGAL_ADDRESS
        # Unused addresses around the relay may be written (and are ignored, as they read 0):
        # that is how a client that only sends function 16 for two or more registers (mbpoll)
        # switches a one-register relay. Any other register of the map is read-only.
        block = self.blocks["holding"]
        if any(r is not reg and r.address < end and r.end > address for r in block.registers):
            return ILLEGAL_ADDRESS
        if fc != relay.write_function:
            return ILLEGAL_FUNCTION
        words = values[reg.address - address : reg.end - address]
        if words[-1] not in (relay.on, relay.off) or any(words[:-1]):
            return ILLEGAL_VALUE
        self.set_relay(words[-1] == relay.on)
        return None

    def _write_control(self, address: int, values: list[int]) -> int | None:
        current = self.control_words()
        touched, readonly = control.written_fields(current, address, values)
        if readonly:
            return ILLEGAL_ADDRESS
        checks = {
            "fault_mode": lambda v: v in {m.value for m in FaultMode},
            "tamper": lambda v: v in (0, 1),
            "tamper_stuck": lambda v: v in (0, 1),
            "relay": lambda v: v in (0, 1),
            "reset_energy": lambda v: v in (0, 1),
            "power_factor_milli": lambda v: 1 <= v <= 1000,
        }
        if any(name in checks and not checks[name](v) for name, v in touched.items()):
            return ILLEGAL_VALUE
        # Only fields whose value changes are applied: writing back what was read (a 16-bit
        # speed that shows 0xFFFF for a faster clock, say) changes nothing.
        start = address - control.CONTROL_BASE
        before, _ = control.written_fields(current, address, current[start : start + len(values)])
        now = self.clock.now_ns()
        for name, value in touched.items():
            if value != before[name]:
                self._apply(name, value, now)
        if touched.get("reset_energy") == 1 and self.meter:
            self.meter.reset_energy(self.reset_value_wh, now)
            log.info(
                "unit %d: energy reset to %d Wh (meter replaced)", self.unit, self.reset_value_wh
            )
        return None

    def _apply(self, name: str, value: int, now: int) -> None:
        log.info("unit %d: %s = %d", self.unit, name, value)
        if name == "load_w" and self.meter:
            self.meter.set_load(value, now)
        elif name in ("speed_centi", "speed_centi_32"):
            self.clock.set_speed(Fraction(value, 100))
        elif name == "fault_mode":
            self.fault_mode = FaultMode(value)
        elif name == "fault_param":
            self.fault_param = value
        elif name == "tamper" and self.meter:
            self.meter.set_tamper(bool(value), now)
        elif name == "tamper_stuck" and self.meter:
            self.meter.set_stuck(bool(value), now)
        elif name == "reset_value_wh":
            self.reset_value_wh = value
        elif name == "relay":
            self.set_relay(bool(value))
        elif name == "power_factor_milli" and self.meter:
            self.meter.set_power_factor(value, now)

    # ---------------------------------------------------------------- control
    def set_relay(self, on: bool) -> None:
        """Switch the device's own relay."""
        if on != self.relay_on:
            log.info("unit %d: relay %s", self.unit, "on" if on else "off")
        self.relay_on = on
        if self.model.relay:
            reg = self.model.register(self.model.relay.register_name)
            if reg.function == "coil":
                self.bits[reg.address] = on
        self._sync_supply()

    def set_feed(self, on: bool) -> None:
        """Switch the supply upstream of the meter (a relay-module channel)."""
        self.feed_on = on
        self._sync_supply()

    def _sync_supply(self) -> None:
        """The meter has supply when its own relay and the feed upstream are both closed."""
        on = self.relay_on and self.feed_on
        if self.meter is not None and on != self.meter.supply_on:
            self.meter.set_supply(on, self.clock.now_ns())

    def channel(self, address: int) -> bool:
        """A relay module's coil state (True: closed, supply on)."""
        return self.bits.get(address, False)

    def control_words(self) -> list[int]:
        now = self.clock.now_ns()
        speed_centi = int(self.clock.speed * 100)
        meter = self.meter
        return control.to_words(
            {
                "load_w": meter.load_w if meter else 0,
                "speed_centi": min(speed_centi, 0xFFFF),
                "fault_mode": int(self.fault_mode),
                "fault_param": self.fault_param,
                "tamper": int(meter.tamper_bypass) if meter else 0,
                "reset_value_wh": self.reset_value_wh,
                "relay": int(self.relay_on),
                "power_factor_milli": meter.power_factor_milli if meter else 1000,
                "energy_wh": meter.energy_wh(now) if meter else 0,
                "sim_time_s": now // NS_PER_S,
                "speed_centi_32": speed_centi,
                "requests": self.requests & 0xFFFF,
                "tamper_stuck": int(meter.tamper_stuck) if meter else 0,
            }
        )

    def _relay_value(self) -> int:
        relay = self.model.relay
        if relay is None:
            return 0
        return relay.on if self.relay_on else relay.off

    def _is_relay(self, reg: Register) -> bool:
        return self.model.relay is not None and reg.name == self.model.relay.register_name

    def _is_relay_address(self, address: int) -> bool:
        relay = self.model.relay
        if relay is None:
            return False
        return self.model.register(relay.register_name).address == address


def _addr(reg: Register) -> int:
    return reg.address


def _initial_bit(model: MeterModel, reg: Register) -> bool:
    """Coils of a relay module start closed (supply on); other bits start 0."""
    return reg.function == "coil" and (model.kind == "relay" or model.relay is not None)
