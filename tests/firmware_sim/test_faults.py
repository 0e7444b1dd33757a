"""Each fault mode, as a real client sees it: silence (timeout), an exception response with
the set code, a frame with a bad CRC (RTU), a late answer; a write to the control block always
gets through, so a fault can be cleared; faults stay with their own unit."""

import time
from collections.abc import Iterator

import pytest
import serial
from pymodbus.exceptions import ModbusIOException
from pymodbus.framer import FramerRTU
from pymodbus.pdu import ModbusPDU

from firmware_sim.control import FaultMode
from firmware_sim.pty import socat_pair
from tests.firmware_sim.conftest import Sim, launch, shutdown
from tests.firmware_sim.helpers import CONTROL, Client, rtu_client, sim_energy, tcp_client
from tests.support import free_port, wait_for

ENERGY = 0x0A  # dds238 import energy (holding, 2 words)


def _set_fault(client: Client, unit: int, mode: FaultMode, param: int = 0) -> None:
    response = client.write_registers(CONTROL + 3, [int(mode), param], device_id=unit)
    assert not response.isError(), response


def _read(client: Client, unit: int) -> ModbusPDU:
    return client.read_holding_registers(ENERGY, count=2, device_id=unit)


def _code(client: Client, unit: int) -> int | None:
    """The exception code of the answer to a read (None for a normal answer)."""
    response = _read(client, unit)
    return getattr(response, "exception_code", None) if response.isError() else None


@pytest.fixture(scope="module")
def tcp_sim() -> Iterator[Sim]:
    port = free_port()
    args = ["--tcp", f"127.0.0.1:{port}", "--meter", "1:1000", "--meter", "2:1000"]
    sim = launch([*args, "--speed", "3600"], port=port)
    yield sim
    shutdown(sim)


@pytest.fixture(scope="module")
def rtu_sim() -> Iterator[Sim]:
    with socat_pair() as pair:
        sim = launch(["--serial", pair.server, "--meter", "1:1000", "--meter", "2:1000"])
        sim.device = pair.client
        yield sim
        shutdown(sim)


def _fresh(client: Client) -> Client:
    """One simulator serves a module's tests: start each from a healthy meter."""
    for unit in (1, 2):
        words = [0, 0, 0]  # fault mode, fault parameter, tamper bypass
        assert not client.write_registers(CONTROL + 3, words, device_id=unit).isError()
        assert not client.write_registers(0x1A, [1], device_id=unit).isError()
    return client


@pytest.fixture
def tcp(tcp_sim: Sim) -> Iterator[Client]:
    assert tcp_sim.port is not None
    client = tcp_client(tcp_sim.port, timeout=0.3)
    yield _fresh(client)
    client.close()


@pytest.fixture
def rtu(rtu_sim: Sim) -> Iterator[Client]:
    assert rtu_sim.device is not None
    client = rtu_client(rtu_sim.device, timeout=0.3)
    yield _fresh(client)
    client.close()


def _no_response(client: Client) -> None:
    _set_fault(client, 1, FaultMode.NO_RESPONSE)
    started = time.monotonic()
    with pytest.raises(ModbusIOException):
        _read(client, 1)
    assert time.monotonic() - started >= 0.3
    assert not _read(client, 2).isError()  # the other meter still answers
    _set_fault(client, 1, FaultMode.NONE)  # the control block ignores the fault
    assert not _read(client, 1).isError()


def _exception(client: Client) -> None:
    _set_fault(client, 1, FaultMode.EXCEPTION, 6)
    assert _code(client, 1) == 6
    _set_fault(client, 1, FaultMode.EXCEPTION)  # no code given: 4, device failure
    assert _code(client, 1) == 4
    _set_fault(client, 1, FaultMode.NONE)
    assert not _read(client, 1).isError()


def _slow(client: Client) -> None:
    _set_fault(client, 1, FaultMode.SLOW, 150)
    started = time.monotonic()
    assert not _read(client, 1).isError()
    assert 0.15 <= time.monotonic() - started < 0.3
    _set_fault(client, 1, FaultMode.NONE)


def test_tcp_no_response(tcp: Client) -> None:
    _no_response(tcp)


def test_tcp_exception(tcp: Client) -> None:
    _exception(tcp)


def test_tcp_slow(tcp: Client) -> None:
    _slow(tcp)


def test_tcp_bad_crc_is_a_gateway_error(tcp: Client) -> None:
    # Modbus TCP has no CRC: a TCP gateway answers "target device failed to respond".
    _set_fault(tcp, 1, FaultMode.BAD_CRC)
    assert _code(tcp, 1) == 0x0B
    _set_fault(tcp, 1, FaultMode.NONE)


def test_tcp_tamper_bypass_energy_flows_while_the_relay_reads_off(tcp: Client) -> None:
    assert not tcp.write_registers(0x1A, [0], device_id=1).isError()  # relay off
    assert not tcp.write_registers(CONTROL + 5, [1], device_id=1).isError()  # bypass
    assert tcp.read_holding_registers(0x1A, count=1, device_id=1).registers == [0]
    assert tcp.read_holding_registers(0x0E, count=1, device_id=1).registers == [1000]
    t0, e0 = sim_energy(tcp, 1)
    wait_for(lambda: sim_energy(tcp, 1)[0] >= t0 + 1800, timeout=5)
    t1, e1 = sim_energy(tcp, 1)
    assert abs((e1 - e0) - 1000 * (t1 - t0) / 3600) <= 2


def test_tcp_energy_reset_meter_replaced(tcp: Client) -> None:
    wait_for(lambda: sim_energy(tcp, 1)[1] >= 100, timeout=5)
    assert not tcp.write_registers(CONTROL + 6, [1, 0, 0], device_id=1).isError()
    words = tcp.read_holding_registers(ENERGY, count=2, device_id=1).registers
    assert words[0] == 0 and words[1] <= 10  # back to (nearly) 0 kWh, now counting again
    assert not tcp.write_registers(CONTROL + 6, [1, 0, 5000], device_id=1).isError()
    words = tcp.read_holding_registers(ENERGY, count=2, device_id=1).registers
    assert 500 <= words[1] <= 510  # 5 kWh in 1/100 kWh, then counting again


def test_tcp_unknown_unit_is_a_gateway_error(tcp: Client) -> None:
    assert _code(tcp, 9) == 0x0B


@pytest.mark.serial
def test_rtu_no_response(rtu: Client) -> None:
    _no_response(rtu)


@pytest.mark.serial
def test_rtu_exception(rtu: Client) -> None:
    _exception(rtu)


@pytest.mark.serial
def test_rtu_slow(rtu: Client) -> None:
    _slow(rtu)


@pytest.mark.serial
def test_rtu_bad_crc(rtu_sim: Sim) -> None:
    assert rtu_sim.device is not None
    client = rtu_client(rtu_sim.device, timeout=0.3)
    try:
        _fresh(client)
        _set_fault(client, 1, FaultMode.BAD_CRC)
        # pymodbus drops the frame as garbage and reports no valid response.
        with pytest.raises(ModbusIOException):
            _read(client, 1)
    finally:
        client.close()
    # On the wire: a complete answer whose CRC does not match its bytes.
    request = bytes([1, 3, 0, ENERGY, 0, 2])
    request += FramerRTU.compute_CRC(request).to_bytes(2, "big")
    with serial.Serial(rtu_sim.device, 9600, timeout=0.5) as port:
        port.reset_input_buffer()
        port.write(request)
        answer = port.read(9)
        assert len(answer) == 9 and answer[:3] == bytes([1, 3, 4])
        assert FramerRTU.compute_CRC(answer[:-2]) != int.from_bytes(answer[-2:], "big")
        # The control block still answers, so the fault can be cleared.
        clear = bytes([1, 16, 0x90, 0x03, 0, 1, 2, 0, 0])
        port.write(clear + FramerRTU.compute_CRC(clear).to_bytes(2, "big"))
        ack = port.read(8)
        assert ack[:2] == bytes([1, 16])
        assert FramerRTU.compute_CRC(ack[:-2]) == int.from_bytes(ack[-2:], "big")


@pytest.mark.serial
def test_rtu_unknown_unit_is_silent(rtu: Client) -> None:
    with pytest.raises(ModbusIOException):
        _read(rtu, 9)
    assert not _read(rtu, 1).isError()
