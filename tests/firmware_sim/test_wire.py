"""A plain pymodbus client reads every register of every shipped model, over Modbus TCP and
over RTU on a socat pty pair, and gets values consistent with the simulated load.

One mixed bus carries every model (one unit each), as a real RS-485 line may."""

from decimal import Decimal

import pytest

from firmware_sim.registers import ENERGY_UNITS
from hardware.regmap import available_models, load_model
from tests.firmware_sim.conftest import StartSim
from tests.firmware_sim.helpers import (
    CONTROL,
    Client,
    check_values,
    energy_wh,
    read_all,
    read_value,
    rtu_client,
    sim_energy,
    tcp_client,
)
from tests.support import wait_for

START_WH = 123_456
TRANSPORTS = ["tcp", pytest.param("rtu", marks=pytest.mark.serial)]
# unit -> (model, load W): every shipped model on one bus.
BUS = {unit: (name, 1000 + 700 * unit) for unit, name in enumerate(available_models(), start=1)}
BUS_ARGS = [
    arg for unit, (name, load) in BUS.items() for arg in ("--meter", f"{unit}:{load}@{name}")
]


def start(transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest, *args: str) -> Client:
    if transport == "tcp":
        sim = sim_tcp(*args)
        assert sim.port is not None
        return tcp_client(sim.port)
    sim_serial: StartSim = request.getfixturevalue("sim_serial")
    sim = sim_serial(*args)
    assert sim.device is not None
    return rtu_client(sim.device)


def test_the_bus_has_every_shipped_model() -> None:
    assert {"dds238-2-zn-sr", "sdm120", "sdm630", "modbus-relay-module"} <= {
        name for name, _ in BUS.values()
    }


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_every_register_of_every_model(
    transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest
) -> None:
    client = start(transport, sim_tcp, request, *BUS_ARGS, "--speed", "0")
    try:
        for unit, (name, load) in BUS.items():
            model = load_model(name)
            if model.kind == "relay":
                values = read_all(client, model, unit)
                assert set(values.values()) == {Decimal(1)}, values  # every channel closed
                continue
            # Paused clock: the meter was replaced at 123.456 kWh; every register is then
            # checked exactly against it and the load.
            words = [1, START_WH >> 16, START_WH & 0xFFFF]
            assert not client.write_registers(CONTROL + 6, words, device_id=unit).isError()
            values = read_all(client, model, unit)
            check_values(name, values, load, model.phases)
            energy = model.register("import_energy")
            per_unit = ENERGY_UNITS[energy.unit]  # base units (Wh, L) per register unit
            step = Decimal(1) if energy.type.startswith("float") else energy.scale * per_unit
            wh = values["import_energy"] * per_unit
            assert Decimal(START_WH) - step < wh <= Decimal(START_WH) + Decimal("0.01")
            assert energy_wh(client, unit) == START_WH
    finally:
        client.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_energy_advances_as_load_times_simulated_time(
    transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest
) -> None:
    meters = {unit: item for unit, item in BUS.items() if load_model(item[0]).kind == "meter"}
    client = start(transport, sim_tcp, request, *BUS_ARGS, "--speed", "3600")
    try:
        # The model's register, then the exact energy, per unit: equal skew before and after.
        before = {unit: _sample(client, name, unit) for unit, (name, _) in meters.items()}
        wait_for(lambda: sim_energy(client, 1)[0] >= before[1][1] + 1800, timeout=5)
        for unit, (name, load) in meters.items():
            r0, t0, e0 = before[unit]
            r1, t1, e1 = _sample(client, name, unit)
            # Exact energy against simulated seconds, both from one read (whole seconds).
            assert abs((e1 - e0) - load * (t1 - t0) / 3600) <= load / 3600 + 1, (name, e0, e1)
            # The model's own register moved by the same amount, within its resolution and
            # the milliseconds between reads (at 3600x a few Wh each).
            per_unit = ENERGY_UNITS[load_model(name).register("import_energy").unit]
            moved = float((r1 - r0) * per_unit)
            assert abs(moved - (e1 - e0)) <= 40, (name, r0, r1, e0, e1)
    finally:
        client.close()


def _sample(client: Client, name: str, unit: int) -> tuple[Decimal, int, int]:
    """(the model's import register in its unit, simulated seconds, exact base units)."""
    model = load_model(name)
    register = read_value(client, model, model.register("import_energy"), unit)
    return (register, *sim_energy(client, unit))


def test_relay_module_switches_a_meter_without_relay(sim_tcp: StartSim) -> None:
    sim = sim_tcp(
        "--model", "sdm120", "--meter", "1:1000", "--relay-unit", "9:1:3", "--profile", "household"
    )
    assert sim.ready.endswith("units 1,9")
    assert sim.port is not None
    client = tcp_client(sim.port)
    model = load_model("sdm120")
    try:
        assert read_value(client, model, model.register("power"), 1) > 0
        assert not client.write_coil(3, False, device_id=9).isError()
        assert (
            client.read_coils(0, count=8, device_id=9).bits[:8] == [True] * 3 + [False] + [True] * 4
        )
        assert read_value(client, model, model.register("power"), 1) == 0
        assert not client.write_coil(3, True, device_id=9).isError()
        assert read_value(client, model, model.register("power"), 1) > 0
    finally:
        client.close()
