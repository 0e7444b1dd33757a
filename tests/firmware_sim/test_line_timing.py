"""--line-timing: each answer takes its RS-485 on-wire time (25.0 ms for 2 registers and
62.5 ms for 20 at 9600 8N1), within 15 %, measured with a plain pymodbus client. The fastest of
several reads is compared: a loaded machine (other tests in parallel) only adds time."""

import threading
import time

import pytest

from firmware_sim.line import Line
from tests.firmware_sim.conftest import StartSim
from tests.firmware_sim.helpers import Client, rtu_client, tcp_client

READS = 12


def _fastest_ms(client: Client, count: int, unit: int = 1) -> float:
    client.read_holding_registers(0, count=count, device_id=unit)  # warm up
    times = []
    for _ in range(READS):
        started = time.perf_counter()
        response = client.read_holding_registers(0, count=count, device_id=unit)
        times.append((time.perf_counter() - started) * 1000)
        assert not response.isError(), response
    return min(times)


def test_tcp_line_timing_at_9600_8n1(sim_tcp: StartSim) -> None:
    sim = sim_tcp("--meter", "1", "--line-timing", "--baudrate", "9600")
    assert sim.port is not None
    client = tcp_client(sim.port)
    try:
        assert _fastest_ms(client, 2) == pytest.approx(25.0, rel=0.15)
        assert _fastest_ms(client, 20) == pytest.approx(62.5, rel=0.15)
    finally:
        client.close()


def test_the_line_is_shared_by_every_connection(sim_tcp: StartSim) -> None:
    # Two masters reading at once queue on the one simulated line: 10 reads take 10 x 25 ms.
    sim = sim_tcp("--meter", "1", "--line-timing", "--baudrate", "9600")
    assert sim.port is not None
    clients = [tcp_client(sim.port), tcp_client(sim.port)]
    errors: list[str] = []

    def poll(client: Client) -> None:
        for _ in range(5):
            response = client.read_holding_registers(0, count=2, device_id=1)
            if response.isError():
                errors.append(str(response))

    threads = [threading.Thread(target=poll, args=(client,)) for client in clients]
    started = time.perf_counter()
    try:
        for thread in threads:
            thread.start()
    finally:
        for thread in threads:
            thread.join(10)
        for client in clients:
            client.close()
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert not errors
    assert elapsed_ms == pytest.approx(10 * 25.0, rel=0.15)


def test_tcp_without_line_timing_is_fast(sim_tcp: StartSim) -> None:
    sim = sim_tcp("--meter", "1")
    assert sim.port is not None
    client = tcp_client(sim.port)
    try:
        assert _fastest_ms(client, 20) < 10
    finally:
        client.close()


@pytest.mark.serial
def test_rtu_line_timing_adds_the_on_wire_time_at_9600_8n2(sim_serial: StartSim) -> None:
    # pymodbus' serial client keeps its own inter-frame silences (several ms at 9600 baud),
    # so the line model is measured as what it adds to a simulator without it.
    ms = {}
    for extra in ((), ("--line-timing",)):
        sim = sim_serial("--meter", "1", "--baudrate", "9600", "--stopbits", "2", *extra)
        assert sim.device is not None
        client = rtu_client(sim.device)
        try:
            ms[extra] = _fastest_ms(client, 20)
        finally:
            client.close()
            sim.process.stop()
    expected = Line(9600, "N", 2).read_s(20) * 1000  # 11-bit characters: 68.75 ms
    assert ms[("--line-timing",)] - ms[()] == pytest.approx(expected, rel=0.15)
