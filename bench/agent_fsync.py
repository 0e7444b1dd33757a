"""How many fsyncs (and so SQLite commits) the agent spends per closed usage interval.

    .venv/bin/python bench/agent_fsync.py [--seconds 20] [--meters 4]

Runs the real ``smsa-agent`` under ``strace -f -y -e trace=fsync,fdatasync`` against the
simulator (Modbus TCP), each meter with a hub credit state (so every interval is priced and
charged, as on a gateway in service) and no broker listening (so the uplink makes no commits of
its own: only the engine writes). Two runs of the same length: one with ``report_interval_s``
of 1 s, one with an hour (no interval closes); the difference in fsyncs of the SQLite file
(``agent.db``, ``agent.db-wal``), divided by the intervals closed, is the cost of one interval.
In WAL mode with ``synchronous=FULL`` each commit that wrote something syncs the WAL once; a
checkpoint syncs both files. The status file's own fsyncs are left out. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.credit import CreditBook  # noqa: E402
from protocol.messages import CreditState  # noqa: E402
from protocol.signing import new_key  # noqa: E402
from protocol.tariff import Tariff  # noqa: E402
from tests.support import free_port, stop  # noqa: E402

TARIFF = {"id": "flat", "currency": "USD", "components": [{"provider": "p", "per_kwh": "0.10"}]}
FSYNC = re.compile(r"\b(fsync|fdatasync)\((\d+)<([^>]*)>\)")


def config(tmp: Path, sim_port: int, meters: int, report_s: float) -> Path:
    lines = [
        'gateway_id = "gw-fsync"',
        "[mqtt]",
        f'url = "mqtt://127.0.0.1:{free_port()}"',  # nothing listens: the uplink stays down
        "[security]",
        f'command_key = "{new_key()}"',
        "[storage]",
        f'path = "{tmp / "agent.db"}"',
        "[timing]",
        "poll_interval_s = 0.1",
        f"report_interval_s = {report_s}",
        "[status]",
        f'path = "{tmp / "status.json"}"',
        "interval_s = 1.0",
        "[[buses]]",
        'name = "bus0"',
        'transport = "tcp"',
        'host = "127.0.0.1"',
        f"port = {sim_port}",
    ]
    for unit in range(1, meters + 1):
        lines += ["[[meters]]", f'id = "m{unit}"', 'bus = "bus0"', f"unit = {unit}"]
        lines += ['model = "dds238-2-zn-sr"']
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(seconds: float, meters: int, report_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fsync-") as d:
        tmp = Path(d)
        port = free_port()
        loads = [a for u in range(1, meters + 1) for a in ("--meter", f"{u}:2000")]
        sim = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim", "--log-level", "ERROR", "--tcp",
             f"127.0.0.1:{port}", "--speed", "60", *loads],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert sim.stdout is not None
        sim.stdout.readline()  # the ready line
        book = CreditBook(tmp / "agent.db")
        tariff = Tariff.model_validate(TARIFF)
        for unit in range(1, meters + 1):
            book.apply(f"m{unit}", CreditState(balance=10**9, as_of_seq=0, tariff=tariff))
        book.close()
        trace = tmp / "strace.out"
        agent = subprocess.Popen(
            ["strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync", "-o", str(trace),
             sys.executable, "-m", "agent", "--config", str(config(tmp, port, meters, report_s)),
             "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            time.sleep(seconds)
        finally:
            stop(agent)  # SIGTERM: a clean stop
            stop(sim)
        files: Counter[str] = Counter()
        for line in trace.read_text().splitlines():
            found = FSYNC.search(line)
            if found:
                files[Path(found.group(3)).name] += 1
        with sqlite3.connect(tmp / "agent.db") as conn:
            intervals = conn.execute("SELECT coalesce(sum(seq), 0) FROM agent_meter_state")
            closed = int(intervals.fetchone()[0])
        db = {name: n for name, n in files.items() if name.startswith("agent.db")}
        return {"report_s": report_s, "intervals": closed, "db_fsyncs": sum(db.values()),
                "by_file": db}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--meters", type=int, default=4)
    args = ap.parse_args()
    busy = run(args.seconds, args.meters, 1.0)
    idle = run(args.seconds, args.meters, 3600.0)
    per = (busy["db_fsyncs"] - idle["db_fsyncs"]) / max(1, busy["intervals"] - idle["intervals"])
    print(json.dumps({"intervals": busy, "no_intervals": idle, "fsyncs_per_interval": per}))


if __name__ == "__main__":
    main()
