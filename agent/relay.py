"""Switching supply through a model's relay mechanism, with read-back.

A meter's relay is either its own (``model.relay``: for the DDS238 holding register 0x001A
written with function 16) or a channel of a relay module on the same bus (the meter's
``relay_unit``/``relay_model``/``relay_channel``: a coil written with function 5). Every write is
read back; the caller reports a mismatch as tamper.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import BusError, RelayError
from hardware.regmap import MeterModel, Register, load_model

if TYPE_CHECKING:
    from agent.modbus.bus import ModbusLine
    from agent.settings import MeterSettings


@dataclass(frozen=True)
class RelaySpec:
    meter: str
    unit: int
    register: Register
    write_function: int
    on: int
    off: int

    @classmethod
    def for_meter(
        cls, meter: MeterSettings, model: MeterModel, dirs: tuple[Path, ...] = ()
    ) -> RelaySpec | None:
        """How ``meter`` is switched, or None if it cannot be (``dirs``: more register maps)."""
        if meter.relay_unit is not None and meter.relay_model is not None:
            module = load_model(meter.relay_model, dirs)
            assert module.relay is not None
            channel = meter.relay_channel or 0
            name = f"channel_{channel}" if module.kind == "relay" else module.relay.register_name
            return cls(
                meter.id,
                meter.relay_unit,
                module.register(name),
                module.relay.write_function,
                module.relay.on,
                module.relay.off,
            )
        if model.relay is None:
            return None
        return cls(
            meter.id,
            meter.unit,
            model.register(model.relay.register_name),
            model.relay.write_function,
            model.relay.on,
            model.relay.off,
        )

    def decode(self, words: list[int]) -> bool:
        """True when the words read from the relay register mean supply on."""
        value = words[0]
        if self.register.function in ("coil", "discrete"):
            return bool(value) == bool(self.on)
        return value == self.on

    def read(self, line: ModbusLine, timeout: float) -> bool:
        reg = self.register
        return self.decode(line.read(self.unit, reg.function, reg.address, reg.width, timeout))

    def switch(self, line: ModbusLine, on: bool, timeout: float) -> bool:
        """Write the relay and read it back; returns the state read back (True = supply on)."""
        value = self.on if on else self.off
        addr = self.register.address
        try:
            if self.write_function == 5:
                line.write_coil(self.unit, addr, bool(value), timeout)
            elif self.write_function == 6:
                line.write_register(self.unit, addr, value, timeout)
            elif self.write_function == 16:
                line.write_registers(self.unit, addr, [value], timeout)
            else:
                raise RelayError(self.meter, f"write function {self.write_function} unsupported")
            return self.read(line, timeout)
        except BusError as exc:
            raise RelayError(self.meter, str(exc)) from exc
