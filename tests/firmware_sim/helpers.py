"""Reading a register map's values back with a plain pymodbus client."""

from decimal import Decimal

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from hardware.regmap import MeterModel, Register

Client = ModbusTcpClient | ModbusSerialClient
CONTROL = 0x9000


def tcp_client(port: int, timeout: float = 1.0, retries: int = 0) -> ModbusTcpClient:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=timeout, retries=retries)
    assert client.connect()
    return client


def rtu_client(device: str, timeout: float = 1.0, retries: int = 0) -> ModbusSerialClient:
    client = ModbusSerialClient(
        device, framer=FramerType.RTU, baudrate=9600, timeout=timeout, retries=retries
    )
    assert client.connect()
    return client


def read_raw(client: Client, reg: Register, unit: int) -> ModbusPDU:
    if reg.function == "holding":
        return client.read_holding_registers(reg.address, count=reg.width, device_id=unit)
    if reg.function == "input":
        return client.read_input_registers(reg.address, count=reg.width, device_id=unit)
    if reg.function == "coil":
        return client.read_coils(reg.address, count=1, device_id=unit)
    return client.read_discrete_inputs(reg.address, count=1, device_id=unit)


def read_value(client: Client, model: MeterModel, reg: Register, unit: int) -> Decimal:
    response = read_raw(client, reg, unit)
    assert not response.isError(), f"{model.model} {reg.name}: {response}"
    if reg.function in ("coil", "discrete"):
        return Decimal(int(response.bits[0]))
    return model.value(reg, list(response.registers))


def read_all(client: Client, model: MeterModel, unit: int) -> dict[str, Decimal]:
    return {reg.name: read_value(client, model, reg, unit) for reg in model.registers}


def control(client: Client, unit: int) -> list[int]:
    response = client.read_holding_registers(CONTROL, count=0x16, device_id=unit)
    assert not response.isError(), response
    return list(response.registers)


def _u64(words: list[int]) -> int:
    return int.from_bytes(b"".join(w.to_bytes(2, "big") for w in words), "big")


def energy_wh(client: Client, unit: int) -> int:
    """The exact energy (Wh) from the control block."""
    return _u64(control(client, unit)[0x0B:0x0F])


def sim_seconds(client: Client, unit: int) -> int:
    return _u64(control(client, unit)[0x0F:0x13])


def sim_energy(client: Client, unit: int) -> tuple[int, int]:
    """(simulated seconds, exact Wh) from one read of the control block."""
    words = control(client, unit)
    return _u64(words[0x0F:0x13]), _u64(words[0x0B:0x0F])


def near(value: Decimal, expected: float, rel: float = 0.01) -> bool:
    return abs(float(value) - expected) <= rel * abs(expected)


def check_values(model: str, values: dict[str, Decimal], load: int, phases: int) -> None:
    """Each value consistent with `load` W at 230 V, 50 Hz and power factor 0.95."""
    for name, value in values.items():
        if name in ("power", "apparent_power") or name.startswith("power_l"):
            share = load if name == "power" else load / phases
            if name == "apparent_power":
                share = load / 0.95
            assert near(value, share), (model, name, value)
        elif name.startswith("voltage"):
            assert near(value, 230.0), (model, name, value)
        elif name == "frequency":
            assert near(value, 50.0), (model, name, value)
        elif name.startswith("current"):
            assert near(value, load / phases / 230 / 0.95, 0.02), (model, name, value)
        elif name == "power_factor":
            assert near(value, 0.95), (model, name, value)
        elif name == "relay":
            assert value == 1
        elif name == "reactive_power":
            assert near(value, load / 0.95 * (1 - 0.95**2) ** 0.5, 0.02), (model, name, value)
        elif name == "export_energy":
            assert value == 0
