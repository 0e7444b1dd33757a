"""Every simulated device on one bus, the relay-module pairings, and fault decisions (pure)."""

from dataclasses import dataclass

from firmware_sim import control
from firmware_sim.clock import SimClock
from firmware_sim.control import FaultMode
from firmware_sim.device import DEVICE_FAILURE, FUNCTION_OF, Device
from firmware_sim.errors import ConfigError
from firmware_sim.meter import Meter
from firmware_sim.profile import DailyProfile
from hardware.regmap import MeterModel


@dataclass(frozen=True)
class MeterSpec:
    """One ``--meter``: a unit, its base load and (optionally) its own model."""

    unit: int
    load_w: int = 0
    model: MeterModel | None = None


@dataclass(frozen=True)
class Pairing:
    """A relay module at ``module_unit`` whose coil ``channel`` switches ``meter_unit``."""

    module_unit: int
    meter_unit: int
    channel: int = 0


@dataclass(frozen=True)
class Fault:
    mode: FaultMode
    param: int

    @property
    def exception_code(self) -> int:
        return self.param if 1 <= self.param <= 0xFF else DEVICE_FAILURE

    @property
    def delay_s(self) -> float:
        return self.param / 1000


class Bus:
    """Devices by unit id. Reads and writes go to the device; supply follows relays."""

    def __init__(self, clock: SimClock, devices: list[Device], pairings: list[Pairing]) -> None:
        self.clock = clock
        self.devices: dict[int, Device] = {}
        for device in devices:
            if device.unit in self.devices:
                raise ConfigError("--meter", f"unit {device.unit} given twice")
            self.devices[device.unit] = device
        for pair in pairings:
            module = self.devices.get(pair.module_unit)
            meter = self.devices.get(pair.meter_unit)
            if meter is None or meter.meter is None:
                raise ConfigError("--relay-unit", f"unit {pair.meter_unit} is not a meter")
            if module is None or pair.channel not in module.bits:
                raise ConfigError(
                    "--relay-unit", f"unit {pair.module_unit} has no coil {pair.channel}"
                )
        self.pairings = list(pairings)
        self._sync_supply()

    @property
    def units(self) -> list[int]:
        return sorted(self.devices)

    def read(self, unit: int, fc: int, address: int, count: int) -> list[int] | list[bool] | int:
        return self.devices[unit].read(fc, address, count)

    def write(self, unit: int, fc: int, address: int, values: list[int] | list[bool]) -> int | None:
        result = self.devices[unit].write(fc, address, values)
        if result is None:
            self._sync_supply()
        return result

    def fault(self, unit: int, fc: int, address: int, count: int) -> Fault | None:
        """The fault to apply to this request, if any: requests to the control block are
        never faulted, so a client can always clear a fault."""
        device = self.devices[unit]
        device.requests += 1
        if device.fault_mode == FaultMode.NONE:
            return None
        if FUNCTION_OF.get(fc) == "holding" and control.touches_control(address, count):
            return None
        return Fault(device.fault_mode, device.fault_param)

    def _sync_supply(self) -> None:
        """A meter is fed when every relay-module channel feeding it is closed."""
        for device in self.devices.values():
            if device.meter is not None:
                device.set_feed(
                    all(
                        self.devices[p.module_unit].channel(p.channel)
                        for p in self.pairings
                        if p.meter_unit == device.unit
                    )
                )


def build_bus(
    clock: SimClock,
    model: MeterModel,
    meters: list[MeterSpec],
    *,
    pairings: list[Pairing] | None = None,
    relay_model: MeterModel | None = None,
    profile: DailyProfile | None = None,
    power_factor_milli: int = 950,
) -> Bus:
    """Devices for ``meters`` (a relay-module model gives coil-only devices) plus one relay
    module (``relay_model``) for each module unit named in ``pairings`` that is not a meter."""
    pairings = pairings or []
    now = clock.now_ns()
    devices: list[Device] = []
    for spec in meters:
        m = spec.model or model
        physics = (
            Meter(
                at_ns=now,
                load_w=spec.load_w,
                profile=profile,
                power_factor_milli=power_factor_milli,
                phases=m.phases,
            )
            if m.kind == "meter"
            else None
        )
        devices.append(Device(spec.unit, m, clock, physics))
    given = {spec.unit for spec in meters}
    for unit in sorted({p.module_unit for p in pairings} - given):
        if relay_model is None:
            raise ConfigError("--relay-unit", "no relay-module model to pair with")
        devices.append(Device(unit, relay_model, clock, None))
    return Bus(clock, devices, pairings)
