"""Line-model benchmark: reads through ``smsa-meter-sim --line-timing`` against theory.

Starts the simulator on a free 127.0.0.1 port with the line model at 9600 baud 8N1, times
``--reads`` reads of 2 and of 20 holding registers with a plain pymodbus client, prints a
table and writes ``bench/results/line_timing.json``. Goal: within 15 % of the on-wire time
(25.0 ms for 2 registers, 62.5 ms for 20).

    python -m bench.line_timing [--reads 50] [--baudrate 9600] [--parity N]
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient

from firmware_sim.line import Line

RESULTS = Path(__file__).resolve().parent / "results" / "line_timing.json"
TOLERANCE = 0.15


def start_sim(baudrate: int, parity: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "firmware_sim",
            "--tcp",
            "127.0.0.1:0",
            "--meter",
            "1:1000",
            "--line-timing",
            "--baudrate",
            str(baudrate),
            "--parity",
            parity,
            "--log-level",
            "ERROR",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline()  # "listening tcp 127.0.0.1:PORT units 1"
    if not ready.startswith("listening"):
        proc.kill()
        proc.wait()
        raise SystemExit(f"simulator did not start: {ready!r}")
    return proc, int(ready.split()[2].rsplit(":", 1)[1])


def time_reads(client: ModbusTcpClient, count: int, reads: int) -> list[float]:
    client.read_holding_registers(0, count=count, device_id=1)  # connection warm-up
    times = []
    for _ in range(reads):
        started = time.perf_counter()
        response = client.read_holding_registers(0, count=count, device_id=1)
        times.append((time.perf_counter() - started) * 1000)
        if response.isError():
            raise SystemExit(f"read of {count} registers failed: {response}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.line_timing", description=__doc__)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--baudrate", type=int, default=9600)
    parser.add_argument("--parity", default="N")
    args = parser.parse_args(argv)
    line = Line(args.baudrate, args.parity)
    proc, port = start_sim(args.baudrate, args.parity)
    rows = []
    try:
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        client.connect()
        try:
            for count in (2, 20):
                times = time_reads(client, count, args.reads)
                theory = line.read_s(count) * 1000
                median = statistics.median(times)
                rows.append(
                    {
                        "registers": count,
                        "reads": args.reads,
                        "median_ms": round(median, 3),
                        "mean_ms": round(statistics.fmean(times), 3),
                        "p95_ms": round(sorted(times)[int(0.95 * (len(times) - 1))], 3),
                        "theory_ms": round(theory, 3),
                        "ratio": round(median / theory, 4),
                        "within_15pct": abs(median / theory - 1) <= TOLERANCE,
                    }
                )
        finally:
            client.close()
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stdout:
            proc.stdout.close()
    print(f"line model, {args.baudrate} baud 8{args.parity}1, Modbus TCP, {args.reads} reads each")
    print(f"{'registers':>9} {'median ms':>10} {'p95 ms':>8} {'theory ms':>10} {'ratio':>6}")
    for row in rows:
        print(
            f"{row['registers']:>9} {row['median_ms']:>10.2f} {row['p95_ms']:>8.2f} "
            f"{row['theory_ms']:>10.2f} {row['ratio']:>6.3f}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "benchmark": "line_timing",
        "baudrate": args.baudrate,
        "framing": f"8{args.parity}1",
        "transport": "tcp",
        "client": "pymodbus ModbusTcpClient (sync)",
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")
    return 0 if all(row["within_15pct"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
