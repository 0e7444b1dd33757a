"""One device's register behaviour, pure: what the DDS238 accepts and refuses, the control
block, relay-module pairing, the line model."""

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim import control
from firmware_sim.bus import MeterSpec, Pairing, build_bus
from firmware_sim.clock import ManualClock, SimClock
from firmware_sim.control import FaultMode
from firmware_sim.device import ILLEGAL_ADDRESS, ILLEGAL_FUNCTION, ILLEGAL_VALUE, Device
from firmware_sim.errors import ConfigError
from firmware_sim.line import Line
from firmware_sim.meter import UNITS_PER_WH, Meter
from firmware_sim.registers import ENERGY_UNITS, encode
from hardware.regmap import available_models, load_model

DDS = load_model("dds238-2-zn-sr")
RELAY = load_model("modbus-relay-module")


def _dds(load: int = 1000, speed: int = 3600) -> tuple[Device, ManualClock]:
    real = ManualClock()
    clock = SimClock(speed, source=real, start_epoch_ns=0)
    return Device(1, DDS, clock, Meter(at_ns=0, load_w=load)), real


def test_dds238_relay_refuses_function_6_and_accepts_16() -> None:
    device, real = _dds()
    assert device.write(6, 0x1A, [0]) == ILLEGAL_FUNCTION
    assert device.read(3, 0x1A, 1) == [1]
    assert device.write(16, 0x1A, [0]) is None
    assert device.read(3, 0x1A, 1) == [0]
    real.advance(1)
    assert device.read(3, 0x0A, 2) == [0, 0]  # energy frozen at 0
    assert device.read(3, 0x0E, 1) == [0]  # power 0
    assert device.write(16, 0x19, [0, 1]) is None  # unused 0x0019 + relay (mbpoll style)
    assert device.read(3, 0x1A, 1) == [1]


def test_dds238_refuses_bad_writes_and_reads() -> None:
    device, _ = _dds()
    assert device.write(16, 0x1A, [2]) == ILLEGAL_VALUE
    assert device.write(16, 0x0A, [0, 0]) == ILLEGAL_ADDRESS  # energy is read-only
    assert device.write(16, 0x11, [0] * 10) == ILLEGAL_ADDRESS  # covers frequency
    assert device.write(16, 0x1A, [1, 1]) == ILLEGAL_ADDRESS  # past the map
    assert device.read(3, 0x1B, 1) == ILLEGAL_ADDRESS
    assert device.read(4, 0x00, 1) == ILLEGAL_ADDRESS  # no input registers
    assert device.read(3, 0x00, 33) == ILLEGAL_VALUE  # at most 32 a request
    assert device.read(3, 0x12, 2) == [0, 0]  # a gap inside the map reads 0
    assert device.read(7, 0, 1) == ILLEGAL_FUNCTION


def test_energy_register_reads_whole_hundredths_of_kwh() -> None:
    device, real = _dds(load=1000)
    real.advance(1.0049)  # 1004.9 Wh simulated
    assert device.read(3, 0x0A, 2) == [0, 100]


def test_control_block_steers_the_meter() -> None:
    device, real = _dds(load=1000)
    assert device.write(16, 0x9000, [0, 2500]) is None
    assert device.write(6, 0x9001, [500]) is None  # low word only: 500 W
    words = device.read(3, control.CONTROL_BASE, control.CONTROL_COUNT)
    assert isinstance(words, list)
    assert words[0:2] == [0, 500]
    assert words[2] == 0xFFFF  # 3600x does not fit the 16-bit speed x100
    assert words[0x13:0x15] == [360_000 >> 16, 360_000 & 0xFFFF]
    assert device.write(16, 0x9003, [int(FaultMode.EXCEPTION), 6]) is None
    assert device.fault_mode == FaultMode.EXCEPTION and device.fault_param == 6
    assert device.write(6, 0x9003, [9]) == ILLEGAL_VALUE
    assert device.write(16, 0x900B, [0]) == ILLEGAL_ADDRESS  # energy is read-only
    assert device.write(16, 0x9006, [1, 0, 42]) is None  # replaced at 42 Wh
    assert device.meter is not None and device.meter.energy_wh(device.clock.now_ns()) == 42
    assert device.write(16, 0x9013, [0, 100]) is None  # speed 1.00 (32-bit form)
    assert device.clock.speed == 1
    assert device.read(3, 0x8FFF, 2) == ILLEGAL_ADDRESS
    real.advance(3600)
    assert device.meter.energy_wh(device.clock.now_ns()) == 42 + 500


def test_no_shipped_map_uses_the_control_block() -> None:
    for name in available_models():
        for reg in load_model(name).registers:
            assert not control.touches_control(reg.address, reg.width), (name, reg.name)


def test_relay_module_pairs_with_a_meter_without_relay() -> None:
    real = ManualClock()
    clock = SimClock(3600, source=real, start_epoch_ns=0)
    bus = build_bus(
        clock,
        load_model("sdm120"),
        [MeterSpec(1, 1000)],
        pairings=[Pairing(9, 1, 2)],
        relay_model=RELAY,
    )
    assert bus.units == [1, 9]
    assert bus.read(9, 1, 0, 8) == [True] * 8
    assert bus.write(9, 5, 2, [False]) is None
    meter = bus.devices[1].meter
    assert meter is not None and not meter.supply_on
    real.advance(1)
    assert meter.energy_wh(clock.now_ns()) == 0
    assert bus.write(9, 15, 0, [True, True, True]) is None
    real.advance(1)
    assert meter.energy_wh(clock.now_ns()) == 1000
    with pytest.raises(ConfigError):
        build_bus(clock, DDS, [MeterSpec(1)], pairings=[Pairing(9, 1, 8)], relay_model=RELAY)


def test_faults_spare_the_control_block() -> None:
    real = ManualClock()
    bus = build_bus(SimClock(1, source=real), DDS, [MeterSpec(1)])
    assert bus.fault(1, 3, 0x0A, 2) is None
    assert bus.write(1, 16, 0x9003, [int(FaultMode.NO_RESPONSE)]) is None
    fault = bus.fault(1, 3, 0x0A, 2)
    assert fault is not None and fault.mode == FaultMode.NO_RESPONSE
    assert bus.fault(1, 16, 0x9003, 1) is None
    assert bus.fault(1, 3, 0x9000, 22) is None


def test_encoding_clamps_and_rounds_down_energy() -> None:
    power = DDS.register("power")
    assert encode(DDS, power, 40_000) == [0x7FFF]  # s16 W cannot show more
    energy = DDS.register("import_energy")
    assert encode(DDS, energy, 12.3499) == [0, 1234]


def test_line_times() -> None:
    line = Line(9600, "N", 1)
    assert line.read_s(2) == pytest.approx(0.025)
    assert line.read_s(20) == pytest.approx(0.0625)
    assert Line(9600, "E", 1).bits_per_char == 11
    assert Line(9600, "N", 2).bits_per_char == 11
    fast = Line(38400)
    assert fast.gap_s == 0.00175
    assert fast.read_s(2) == pytest.approx(17 * 10 / 38400 + 2 * 0.00175)
    with pytest.raises(ConfigError):
        Line(9600, "X")


def test_writing_back_the_control_block_changes_nothing() -> None:
    device, _ = _dds(load=1000, speed=3600)
    words = device.read(3, control.CONTROL_BASE, 11)
    assert isinstance(words, list) and words[2] == 0xFFFF
    assert device.write(16, control.CONTROL_BASE, [int(w) for w in words]) is None
    assert device.clock.speed == 3600  # not 655.35
    assert device.meter is not None and device.meter.load_w == 1000


@given(
    name=st.sampled_from(["dds238-2-zn-sr", "sdm120", "sdm630"]),
    units=st.integers(0, 10**9 * UNITS_PER_WH),
)
def test_energy_register_decodes_to_the_exact_energy_rounded_down(name: str, units: int) -> None:
    """What the agent decodes (hardware.regmap) is the simulator's exact energy, rounded down
    to the register's resolution (integer registers) or to float32 precision."""
    model = load_model(name)
    reg = model.register("import_energy")
    exact = Fraction(units, UNITS_PER_WH)  # Wh
    value = exact / ENERGY_UNITS[reg.unit]
    decoded = model.value(reg, encode(model, reg, value)) * ENERGY_UNITS[reg.unit]
    if reg.type.startswith("float"):
        assert abs(Fraction(decoded) - exact) <= exact * Fraction(1, 2**23) + Fraction(1, 10**6)
    else:
        step = Fraction(reg.scale) * ENERGY_UNITS[reg.unit]
        assert exact - step < Fraction(decoded) <= exact


def test_the_frozen_register_tamper_is_steered_through_the_control_block() -> None:
    device, real = _dds(load=1000)
    stuck = control.field("tamper_stuck").address
    assert stuck == 0x9016
    real.advance(1.0)  # 1000 Wh simulated
    assert device.write(6, stuck, [2]) == ILLEGAL_VALUE
    assert device.write(6, stuck, [1]) is None
    assert device.read(3, stuck, 1) == [1]
    real.advance(1.0)
    assert device.read(3, 0x0A, 2) == [0, 100]  # 1.00 kWh: frozen
    assert device.read(3, 0x0D, 1) != [0]  # the current still flows
    assert device.read(3, 0x9005, 1) == [0]  # the relay bypass untouched
    assert device.write(6, stuck, [0]) is None
    real.advance(1.0)
    assert device.read(3, 0x0A, 2) == [0, 200]
