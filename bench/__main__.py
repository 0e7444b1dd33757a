"""``make bench``: run every benchmark, print one table of figures against their goals.

Each benchmark is its own module that writes ``bench/results/<name>.json``; this runner starts
each in a fresh process (so one's memory or threads never skew another's), then reads the files
and writes the combined table to ``bench/results.json``. Ratios are measured within one run of
one benchmark (ours against the raw broker or raw pymodbus on the same machine).
"""

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

Row = dict[str, Any]


def line_timing(data: dict[str, Any]) -> list[Row]:
    return [
        _row(
            f"line model, read of {r['registers']} registers at 9600 8N1 (ms)",
            r["median_ms"],
            f"within 15 % of {r['theory_ms']}",
            r["ratio"],
            abs(r["ratio"] - 1) <= 0.15,
        )
        for r in data["rows"]
    ]


def agent_bus(data: dict[str, Any]) -> list[Row]:
    rows = []
    for key, label in (
        ("rtu_9600_line_timing", "agent, 16 meters on RTU 9600 (meters/s), default gap"),
        ("rtu_9600_line_timing_no_agent_gap", "agent, 16 meters on RTU 9600 (meters/s), no gap"),
    ):
        case = data[key]
        rows.append(
            _row(
                label,
                case["meters_per_s"],
                ">= 0.9 of the bus limit",
                case["ratio"],
                case["ratio"] >= 0.9,
            )
        )
    tcp = data["tcp_no_line_timing"]
    rows.append(
        _row(
            "agent vs bare pymodbus over TCP (meters/s)",
            tcp["agent_meters_per_s"],
            ">= 0.9 of bare pymodbus",
            tcp["ratio"],
            tcp["ratio"] >= 0.9,
        )
    )
    rss = data["rss_32_meters"]["peak_rss_mb"]
    rows.append(_row("agent resident memory, 32 meters (MB)", rss, "<= 60 MB", None, rss <= 60))
    return rows


def hub_ingest(data: dict[str, Any]) -> list[Row]:
    return [
        _row(
            f"hub settled records/s into {r['db']} ({r['records']} records, {r['mode']})",
            r["settled_records_per_s"],
            ">= 0.8 of raw QoS 1 subscriber",
            r["ratio"],
            bool(r["met"]) and bool(r["invariants_ok"]),
        )
        for r in data["results"]
    ]


def pump_drain(data: dict[str, Any]) -> list[Row]:
    r = data["result"]
    return [
        _row(
            f"hub MQTT pump draining {r['messages']} QoS 1 messages (msg/s)",
            r["pump_messages_per_s"],
            ">= 1.0 of bare paho subscriber",
            r["ratio"],
            bool(r["met"]),
        )
    ]


def billing(data: dict[str, Any]) -> list[Row]:
    return [
        _row(
            f"billing run, {data['customers']} customers x 2 services (CPU s)",
            data["run_cpu_s"],
            f"<= {data['goal_cpu_s']:.0f} s of CPU",
            None,
            bool(data["met"]),
        ),
        _row("billing run (bills/s)", data["bills_per_s"], "", None, True),
        _row("bill PDF rendering (pages/s)", data["pdf_pages_per_s"], "reported apart", None, True),
    ]


def dashboard(data: dict[str, Any]) -> list[Row]:
    return [
        _row(
            f"dashboard first page in headless chromium, {data['meters']:,} meters (s)",
            data["first_page_median_s"],
            f"< {data['goal_s']} s",
            None,
            bool(data["met"]),
        )
    ]


def insights(data: dict[str, Any]) -> list[Row]:
    return [
        _row(
            f"insights, {data['customers']:,} customers x {data['days']} days of 15 min (s)",
            data["analysis_wall_s"],
            f"< {data['goal_s']:.0f} s",
            None,
            bool(data["met"]),
        ),
        _row("insights, CPU (s)", data["analysis_cpu_s"], "reported", None, True),
        _row("insights, peak resident memory (MB)", data["peak_rss_mb"], "reported", None, True),
    ]


BENCHMARKS: dict[str, tuple[list[str], Callable[[dict[str, Any]], list[Row]]]] = {
    "line_timing": (["--reads", "50"], line_timing),
    "agent_bus": (["--seconds", "10"], agent_bus),
    "pump_drain": ([], pump_drain),
    "hub_ingest": (["--db", "both"], hub_ingest),
    "billing": ([], billing),
    "dashboard": ([], dashboard),
    "insights": ([], insights),
}


def _row(figure: str, value: float, goal: str, ratio: float | None, met: bool) -> Row:
    return {"figure": figure, "value": value, "goal": goal, "ratio": ratio, "met": met}


def run(name: str, extra: list[str]) -> None:
    args, _ = BENCHMARKS[name]
    print(f"== {name}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", f"bench.{name}", *args, *extra], check=True)
    print(f"== {name} done in {time.monotonic() - started:.0f} s\n", flush=True)


def table(rows: list[Row]) -> str:
    lines = [f"{'figure':<64} {'value':>10} {'ratio':>6}  {'goal':<32} met"]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
        lines.append(
            f"{r['figure']:<64} {r['value']:>10.1f} {ratio:>6}  {r['goal']:<32} "
            f"{'yes' if r['met'] else 'NO'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(BENCHMARKS)} (default: all)")
    parser.add_argument(
        "--records", type=int, default=200_000, help="usage records for hub_ingest (200000)"
    )
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    for name in names:
        run(name, ["--records", str(args.records)] if name == "hub_ingest" else [])
    rows: list[Row] = []
    for name, (_, summarise) in BENCHMARKS.items():
        path = RESULTS / f"{name}.json"
        if path.exists():
            rows += summarise(json.loads(path.read_text()))
    print(table(rows))
    out = HERE / "results.json"
    out.write_text(json.dumps({"figures": rows}, indent=2) + "\n")
    print(f"\nwritten {out.relative_to(HERE.parent)}")
    return 0 if all(r["met"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
