"""A plain pymodbus client reads every register of every shipped model, over Modbus TCP and
over RTU on a socat pty pair, and gets values consistent with the simulated load."""

from decimal import Decimal

import pytest

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
    sim_seconds,
    tcp_client,
)
from tests.support import wait_for

LOADS = {1: 1000, 2: 2300}
START_WH = 123_456


def _client(
    transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest, *args: str
) -> Client:
    if transport == "tcp":
        sim = sim_tcp(*args)
        assert sim.port is not None
        return tcp_client(sim.port)
    sim_serial: StartSim = request.getfixturevalue("sim_serial")
    sim = sim_serial(*args)
    assert sim.device is not None
    return rtu_client(sim.device)


def _close(client: Client) -> None:
    client.close()


@pytest.mark.parametrize("transport", ["tcp", pytest.param("rtu", marks=pytest.mark.serial)])
@pytest.mark.parametrize("model_name", available_models())
def test_every_register_of_every_model(
    model_name: str, transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest
) -> None:
    model = load_model(model_name)
    meters = [arg for unit, load in LOADS.items() for arg in ("--meter", f"{unit}:{load}")]
    client = _client(transport, sim_tcp, request, "--model", model_name, *meters, "--speed", "0")
    try:
        for unit, load in LOADS.items():
            if model.kind == "relay":
                values = read_all(client, model, unit)
                assert set(values.values()) == {Decimal(1)}, values  # every channel closed
                continue
            # Paused clock: set a known energy (meter replaced at 123.456 kWh), then check
            # every register exactly against it.
            words = [1, START_WH >> 16, START_WH & 0xFFFF]
            assert not client.write_registers(CONTROL + 6, words, device_id=unit).isError()
            values = read_all(client, model, unit)
            check_values(model_name, values, load, model.phases)
            energy = model.register("import_energy")
            step = Decimal(1) if energy.type.startswith("float") else energy.scale * 1000
            wh = values["import_energy"] * 1000 if energy.unit == "kWh" else values["import_energy"]
            assert Decimal(START_WH) - step < wh <= Decimal(START_WH) + Decimal("0.01")
            assert energy_wh(client, unit) == START_WH
    finally:
        _close(client)


@pytest.mark.parametrize("transport", ["tcp", pytest.param("rtu", marks=pytest.mark.serial)])
@pytest.mark.parametrize("model_name", ["dds238-2-zn-sr", "sdm120", "sdm630"])
def test_energy_advances_as_load_times_simulated_time(
    model_name: str, transport: str, sim_tcp: StartSim, request: pytest.FixtureRequest
) -> None:
    model = load_model(model_name)
    energy = model.register("import_energy")
    client = _client(
        transport, sim_tcp, request, "--model", model_name, "--meter", "1:1800", "--speed", "3600"
    )
    try:
        t0, e0 = sim_energy(client, 1)
        r0 = read_value(client, model, energy, 1)
        wait_for(lambda: sim_seconds(client, 1) >= t0 + 1800, timeout=5)
        t1, e1 = sim_energy(client, 1)
        r1 = read_value(client, model, energy, 1)
        # Exact energy against simulated seconds (both from one read, whole-second rounding).
        assert abs((e1 - e0) - 1800 * (t1 - t0) / 3600) <= 2, (e0, e1, t0, t1)
        # The model's own register moved by the same amount, within its resolution and the
        # few milliseconds (at 3600x: about 0.5 Wh each) between the reads.
        moved = (r1 - r0) * 1000
        assert abs(float(moved) - (e1 - e0)) <= 30, (r0, r1, e0, e1)
    finally:
        _close(client)
