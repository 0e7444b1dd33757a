"""mbpoll (libmodbus, a client we did not write) reads every register over Modbus TCP and
RTU on a pty pair, steers the simulation through the control block, and switches the
DDS238 relay with function 16 (it refuses function 6)."""

from collections.abc import Callable
from decimal import Decimal

import pytest

from firmware_sim.registers import ENERGY_UNITS
from hardware.regmap import load_model
from tests.firmware_sim import mbpoll
from tests.firmware_sim.conftest import StartSim
from tests.firmware_sim.helpers import check_values
from tests.firmware_sim.test_wire import BUS, BUS_ARGS
from tests.support import wait_for

pytestmark = [
    pytest.mark.mbpoll,
    pytest.mark.skipif(not mbpoll.available(), reason="mbpoll is not installed"),
]
START_WH = 123_456
TRANSPORTS = ["tcp", pytest.param("rtu", marks=pytest.mark.serial)]


def _start(
    transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest, *args: str
) -> mbpoll.Target:
    if transport == "tcp":
        return mbpoll.Target(port=sim_tcp(*args).port)
    sim_serial: StartSim = request.getfixturevalue("sim_serial")
    return mbpoll.Target(device=sim_serial(*args).device)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mbpoll_reads_every_register(
    transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest
) -> None:
    target = _start(transport, sim_tcp, request, *BUS_ARGS, "--speed", "0")
    for unit, (name, load) in BUS.items():
        model = load_model(name)
        if model.kind == "meter":
            # Control block: 0x9006 reset = 1 with 0x9007-0x9008 = 123456 Wh (function 16).
            result = mbpoll.run(target, unit, "-r", str(0x9006), "-t", "4", values=(1, 1, 57920))
            assert result.returncode == 0, result.stdout + result.stderr
        values = {
            reg.name: mbpoll.read_register(target, model, reg, unit) for reg in model.registers
        }
        if model.kind == "relay":
            assert set(values.values()) == {Decimal(1)}
            continue
        check_values(name, values, load, model.phases)
        energy = model.register("import_energy")
        wh = values["import_energy"] * ENERGY_UNITS[energy.unit]
        assert Decimal(START_WH - 10) < wh <= Decimal(START_WH) + Decimal("0.01"), wh


def _u64(target: mbpoll.Target, address: int) -> int:
    """The low 32 bits of a control-block u64 (enough for these tests)."""
    (text,) = mbpoll.read(target, 1, "-r", str(address + 2), "-t", "4:int", "-B")
    return int(text) & 0xFFFFFFFF


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mbpoll_switches_the_dds238_relay_with_function_16(
    transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest
) -> None:
    target = _start(transport, sim_tcp, request, "--meter", "1:1800", "--speed", "36000")
    energy: Callable[[], int] = lambda: _u64(target, 0x900B)  # noqa: E731
    seconds: Callable[[], int] = lambda: _u64(target, 0x900F)  # noqa: E731

    # A single value makes mbpoll use function 6, which the DDS238 refuses.
    refused = mbpoll.run(target, 1, "-r", str(0x1A), "-t", "4", values=(0,))
    assert refused.returncode != 0
    assert "Illegal function" in refused.stdout + refused.stderr
    assert mbpoll.read(target, 1, "-r", str(0x1A), "-t", "4") == ["1"]

    # Two values (0x0019 is unused, 0x001A the relay) make it use function 16.
    off = mbpoll.run(target, 1, "-r", str(0x19), "-t", "4", values=(0, 0))
    assert off.returncode == 0, off.stdout + off.stderr
    assert mbpoll.read(target, 1, "-r", str(0x1A), "-t", "4") == ["0"]
    assert mbpoll.read(target, 1, "-r", str(0x0E), "-t", "4") == ["0"]  # power
    frozen, since = energy(), seconds()
    wait_for(lambda: seconds() >= since + 3600, timeout=5)  # an hour simulated
    assert energy() == frozen

    on = mbpoll.run(target, 1, "-r", str(0x19), "-t", "4", values=(0, 1))
    assert on.returncode == 0, on.stdout + on.stderr
    assert mbpoll.read(target, 1, "-r", str(0x1A), "-t", "4") == ["1"]
    wait_for(lambda: energy() >= frozen + 900, timeout=5)  # 1800 W for half an hour
