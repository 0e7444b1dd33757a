"""Agent bus benchmark: how close the agent's bus owner gets to the bus and to bare pymodbus.

    .venv/bin/python bench/agent_bus.py [--seconds 10]

1. RTU at 9600 baud 8N1 over a socat pty, simulator with ``--line-timing`` (answers delayed by
   their on-wire time), 16 DDS238 meters on one bus, polled back to back by the agent's
   ``BusPoller``: meters read per second versus the theoretical limit of the same requests on
   the wire (``firmware_sim.line.Line``: request + response frames, each with its 3.5-character
   gap). Goal >= 0.9. Run twice: with the agent's default inter-frame gap, and with
   ``inter_frame_ms = 0`` (the line model already holds the silence after each answer before
   it delivers it, so on the simulator the agent's own gap counts it a second time).
2. Modbus TCP, no line timing, 16 meters: the agent's reads per second versus a bare pymodbus
   loop issuing the same requests, alternating cycle by cycle in one thread. Goal >= 0.9.
3. Resident memory of a real ``smsa-agent`` process (Mosquitto, 32 meters over TCP) after it has
   run a while. Goal <= 60 MB.

Prints a table and writes ``bench/results/agent_bus.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusTcpClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.modbus.poller import BusPoller, Reading, meter_point  # noqa: E402
from agent.settings import MeterSettings, RtuBus, TcpBus  # noqa: E402
from firmware_sim.line import RTU_OVERHEAD, Line  # noqa: E402
from firmware_sim.pty import socat_pair  # noqa: E402
from protocol.signing import new_key  # noqa: E402
from tests.support import free_port, start_mosquitto, stop, wait_for  # noqa: E402

MODEL = "dds238-2-zn-sr"
RESULTS = ROOT / "bench" / "results" / "agent_bus.json"


def start_sim(args: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "--log-level", "ERROR", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # the ready line
    return proc


def units(n: int) -> list[str]:
    return [a for u in range(1, n + 1) for a in ("--meter", f"{u}:1000")]


def meters_on(bus: str, n: int) -> list[MeterSettings]:
    return [MeterSettings(id=f"m{u}", bus=bus, unit=u, model=MODEL) for u in range(1, n + 1)]


def run_poller(
    bus: TcpBus | RtuBus, n: int, seconds: float, windows: int = 1
) -> tuple[list[float], dict[str, int]]:
    """Meters read per second by the agent's bus owner polling back to back, per window."""
    points = [meter_point(m, bus) for m in meters_on(bus.name, n)]
    ok = 0
    lock = threading.Lock()

    def sink(reading: Reading) -> None:
        nonlocal ok
        if reading.ok:
            with lock:
                ok += 1

    poller = BusPoller(bus, points, 0.0, sink)
    poller.start()
    rates: list[float] = []
    try:
        wait_for(lambda: ok >= n, timeout=30)  # warm up: one full cycle
        for _ in range(windows):
            with lock:
                start_ok, start = ok, time.monotonic()
            time.sleep(seconds / windows)
            with lock:
                rates.append((ok - start_ok) / (time.monotonic() - start))
    finally:
        poller.stop()
        poller.join(10)
    errors = sum(p.counters.errors for p in points)
    requests = sum(p.counters.requests for p in points)
    return rates, {"errors": errors, "requests": requests}


def theoretical_meters_per_s(line: Line, blocks: list[int], relay: int, every: int) -> float:
    """The wire limit for meter reads of ``blocks`` (register counts), plus a read of ``relay``
    registers every ``every`` polls, each request with its response and both gaps."""
    per_meter = sum(line.read_s(count) for count in blocks) + line.read_s(relay) / every
    return 1 / per_meter


def _crc16(data: bytes) -> bytes:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return bytes([crc & 0xFF, crc >> 8])


def _read_frame(unit: int, address: int, count: int) -> bytes:
    body = bytes([unit, 3, address >> 8, address & 0xFF, count >> 8, count & 0xFF])
    return body + _crc16(body)


def bench_rtu_raw(seconds: float, n: int, every: int) -> dict[str, Any]:
    """The floor of simulator + pty: prebuilt frames of the agent's requests (its planned
    blocks, then the relay every ``every`` polls) written and read with bare pyserial."""
    import serial  # noqa: PLC0415 (only this case needs it directly)

    bus = TcpBus(name="raw", transport="tcp", host="127.0.0.1", port=1)  # only to plan
    blocks = [(b.address, b.count) for b in meter_point(meters_on("raw", 1)[0], bus).blocks]

    with socat_pair() as pty:
        sim = start_sim(["--serial", pty.server, "--line-timing", "--baudrate", "9600", *units(n)])
        port = serial.Serial(pty.client, 9600, timeout=1)
        try:
            polls, start = 0, time.monotonic()
            while time.monotonic() - start < seconds:
                polls += 1
                for unit in range(1, n + 1):
                    for address, count in blocks:
                        port.write(_read_frame(unit, address, count))
                        assert len(port.read(5 + 2 * count)) == 5 + 2 * count
                    if polls % every == 0:
                        port.write(_read_frame(unit, 0x001A, 1))
                        assert len(port.read(7)) == 7
            rate = polls * n / (time.monotonic() - start)
        finally:
            port.close()
            stop(sim)
    return {"meters": n, "meters_per_s": round(rate, 2)}


def bench_rtu(seconds: float, n: int, gap_ms: float | None) -> dict[str, Any]:
    line = Line(9600, "N", 1)
    with socat_pair() as pty:
        sim = start_sim(["--serial", pty.server, "--line-timing", "--baudrate", "9600", *units(n)])
        try:
            bus = RtuBus(
                name="rtu",
                transport="rtu",
                device=pty.client,
                baudrate=9600,
                timeout_s=0.5,
                retries=0,
                inter_frame_ms=gap_ms,
            )
            rates, counters = run_poller(bus, n, seconds, windows=5)
        finally:
            stop(sim)
    rate = statistics.median(rates)
    point = meter_point(meters_on("rtu", 1)[0], bus)
    blocks = [b.count for b in point.blocks]
    assert point.relay is not None
    relay = point.relay.register.width
    limit = theoretical_meters_per_s(line, blocks, relay, bus.relay_read_every)
    return {
        "meters": n,
        "energy_reads_per_poll": blocks,
        "relay_read_every_polls": bus.relay_read_every,
        "inter_frame_ms": "default (3.5 chars)" if gap_ms is None else gap_ms,
        "meters_per_s": round(rate, 2),
        "window_meters_per_s": [round(r, 2) for r in rates],
        "theoretical_meters_per_s": round(limit, 2),
        "ratio": round(rate / limit, 3),
        **counters,
    }


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _bare_cycle(client: ModbusTcpClient, points: list[Any], n: int, relay_due: bool) -> None:
    """One cycle of the agent's requests from plain pymodbus: relay (when due), then energy."""
    relay = points[0].relay.register
    for unit in range(1, n + 1):
        if relay_due:
            rr = client.read_holding_registers(relay.address, count=1, device_id=unit)
            assert not rr.isError()
        for b in points[0].blocks:
            rr = client.read_holding_registers(b.address, count=b.count, device_id=unit)
            assert not rr.isError()


def bench_tcp(seconds: float, n: int) -> dict[str, Any]:
    """The agent's poll of a meter against the same requests from a bare pymodbus client.

    The host is shared and noisy, so the two alternate cycle by cycle in one thread (each cycle
    reads all ``n`` meters) and each side's time is summed: both see the same conditions.
    """
    port = free_port()
    sim = start_sim(["--tcp", f"127.0.0.1:{port}", *units(n)])
    # the same 1 s answer timeout as the bare client below
    bus = TcpBus(name="tcp", transport="tcp", host="127.0.0.1", port=port, retries=0, timeout_s=1.0)
    points = [meter_point(m, bus) for m in meters_on(bus.name, n)]
    readings: list[Reading] = []
    poller = BusPoller(bus, points, 0.0, readings.append)  # not started: poll() directly
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=1, retries=0)
    assert client.connect()
    agent_s = bare_s = 0.0
    cycles = 0
    try:
        for point in points:  # warm up both connections
            poller.poll(point)
        while agent_s + bare_s < seconds:
            cycles += 1
            relay_due = (cycles + 1) % bus.relay_read_every == 0  # the agent's relay cadence
            if cycles % 2:  # alternate which side goes first
                agent_s += _timed(lambda: [poller.sink(poller.poll(p)) for p in points])
                bare_s += _timed(lambda: _bare_cycle(client, points, n, relay_due))  # noqa: B023
            else:
                bare_s += _timed(lambda: _bare_cycle(client, points, n, relay_due))  # noqa: B023
                agent_s += _timed(lambda: [poller.sink(poller.poll(p)) for p in points])
            readings.clear()
    finally:
        client.close()
        poller.line.close()
        stop(sim)
    agent = cycles * n / agent_s
    bare = cycles * n / bare_s
    return {
        "meters": n,
        "cycles": cycles,
        "agent_meters_per_s": round(agent, 1),
        "bare_pymodbus_meters_per_s": round(bare, 1),
        "ratio": round(agent / bare, 3),
        "errors": sum(p.counters.errors for p in points),
        "requests": sum(p.counters.requests for p in points),
    }


def rss_mb(pid: int) -> tuple[float, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def bench_rss(n: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker_port, port = free_port(), free_port()
        broker = start_mosquitto(tmp, broker_port)
        sim = start_sim(["--tcp", f"127.0.0.1:{port}", "--speed", "60", *units(n)])
        config = tmp / "agent.toml"
        lines = [
            'gateway_id = "bench"',
            f'[mqtt]\nurl = "mqtt://127.0.0.1:{broker_port}"',
            f'[security]\ncommand_key = "{new_key()}"',
            f'[storage]\npath = "{tmp / "agent.db"}"',
            "[timing]\npoll_interval_s = 1.0\nreport_interval_s = 5.0",
            f'[[buses]]\nname = "bus0"\ntransport = "tcp"\nhost = "127.0.0.1"\nport = {port}',
        ]
        lines += [
            f'[[meters]]\nid = "m{u}"\nbus = "bus0"\nunit = {u}\nmodel = "{MODEL}"'
            for u in range(1, n + 1)
        ]
        config.write_text("\n".join(lines) + "\n")
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(config), "--log-level", "WARNING"],
            stderr=subprocess.DEVNULL,
        )
        try:
            status = tmp / "agent.status.json"
            wait_for(status.exists, timeout=30)
            time.sleep(seconds)
            rss, peak = rss_mb(agent.pid)
            data = json.loads(status.read_text())
            read_ok = sum(1 for m in data["meters"].values() if m["state"] == "ok")
        finally:
            stop(agent)
            stop(sim)
            stop(broker)
    return {
        "meters": n,
        "meters_ok": read_ok,
        "rss_mb": round(rss, 1),
        "peak_rss_mb": round(peak, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
        },
        "rtu_9600_line_timing": bench_rtu(args.seconds, 16, None),
        "rtu_9600_line_timing_no_agent_gap": bench_rtu(args.seconds, 16, 0.0),
        "rtu_9600_line_timing_raw_pyserial": bench_rtu_raw(args.seconds, 16, 10),
        "tcp_no_line_timing": bench_tcp(args.seconds, 16),
        "rss_32_meters": bench_rss(32, args.seconds),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    rtu, rtu0 = results["rtu_9600_line_timing"], results["rtu_9600_line_timing_no_agent_gap"]
    tcp, mem = results["tcp_no_line_timing"], results["rss_32_meters"]
    raw = results["rtu_9600_line_timing_raw_pyserial"]
    raw["ratio"] = round(raw["meters_per_s"] / rtu["theoretical_meters_per_s"], 3)
    rows = [
        (
            "RTU 9600, 16 meters, agent gap",
            f"{rtu['meters_per_s']} meters/s",
            f"limit {rtu['theoretical_meters_per_s']}",
            rtu["ratio"],
            ">= 0.9",
        ),
        (
            "RTU 9600, 16 meters, gap 0",
            f"{rtu0['meters_per_s']} meters/s",
            f"limit {rtu0['theoretical_meters_per_s']}",
            rtu0["ratio"],
            ">= 0.9",
        ),
        (
            "RTU 9600, bare pyserial (floor)",
            f"{raw['meters_per_s']} meters/s",
            f"limit {rtu['theoretical_meters_per_s']}",
            raw["ratio"],
            "reference",
        ),
        (
            "TCP, 16 meters",
            f"{tcp['agent_meters_per_s']} meters/s",
            f"bare {tcp['bare_pymodbus_meters_per_s']}",
            tcp["ratio"],
            ">= 0.9",
        ),
        (
            "RSS, 32 meters",
            f"{mem['rss_mb']} MB",
            f"peak {mem['peak_rss_mb']} MB",
            round(mem["rss_mb"] / 60, 3),
            "<= 1 (60 MB)",
        ),
    ]
    print(f"{'case':34} {'measured':18} {'reference':18} {'ratio':>7}  goal")
    for case, measured, ref, ratio, goal in rows:
        print(f"{case:34} {measured:18} {ref:18} {ratio:>7}  {goal}")
    print(
        f"(a meter read: energy {rtu['energy_reads_per_poll']} registers, its relay every "
        f"{rtu['relay_read_every_polls']} polls; RTU frame overhead {RTU_OVERHEAD} bytes)"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
