"""Insights throughput (issue 19): the analysis of ``hub.insights`` (usage profile, comparison
with similar customers, re-rating on two offered tariffs, anomalies, payment behaviour, offers)
for N customers with 90 days of 15-minute records each (each with the mean current the agent
reports, so the bypass check runs over every record), in memory as the reads module hands
them over. Prints a table and writes ``bench/results/insights.json``.

What is timed is ``hub.insights.service.analyse`` per customer plus the peer comparison of the
whole population; each customer's synthetic records are made just before (timed apart) and
dropped after, as a streaming run would. Reading from the database is not part of it.
Memory: the process's peak resident size (``resource.getrusage``) and the peak of Python
allocations (``tracemalloc``, numpy's arrays included) in a separate, smaller traced pass,
since tracing slows the run.

Goal: 10,000 customers in under 2 minutes. The wall time depends on what else the machine runs
(the load average is recorded); the CPU time does not."""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from hub.insights.anomalies import Samples
from hub.insights.peers import Comparison, compare_all
from hub.insights.reads import CustomerData, MeterData
from hub.insights.series import DAY_S, SLOT_S, Series
from hub.insights.service import InsightsSettings, analyse, daily_average
from protocol.tariff import Tariff

RESULTS = Path(__file__).resolve().parent / "results" / "insights.json"
GOAL_S = 120.0
NOW = datetime(2027, 4, 1, tzinfo=UTC)
DAYS = 90
FLAT = Tariff.model_validate({"id": "flat", "currency": "USD", "components": [
    {"provider": "gen", "per_kwh": "0.12"}, {"provider": "grid", "per_kwh": "0.05",
                                             "per_day": "0.20"}]})  # fmt: skip
TOU = Tariff.model_validate({"id": "tou", "currency": "USD", "components": [
    {"provider": "gen", "per_kwh": "0.15", "tou": [{"start": "22:00", "end": "07:00",
                                                    "price": "0.06"}]},
    {"provider": "grid", "per_kwh": "0.05", "per_day": "0.20"}]})  # fmt: skip
SAVER = Tariff.model_validate({"id": "saver", "currency": "USD", "components": [
    {"provider": "gen", "per_kwh": "0.11"}, {"provider": "grid", "per_kwh": "0.05",
                                             "per_day": "0.25"}]})  # fmt: skip
TARIFFS = {"flat": FLAT, "tou": TOU, "saver": SAVER}
# a household's quarter-hour shape (Wh), low at night, peaks morning and evening
SHAPE = np.array([60] * 26 + [180] * 10 + [90] * 32 + [220] * 16 + [120] * 12, dtype=np.int64)


def grid() -> tuple[np.ndarray, np.ndarray]:
    end = int(NOW.timestamp())
    start = np.arange(end - DAYS * DAY_S, end, SLOT_S, dtype=np.int64)
    return start, start + SLOT_S


def customer(i: int, start: np.ndarray, stop: np.ndarray) -> CustomerData:
    """Customer ``i`` on FLAT with its records, drawn from a generator seeded with ``i``: one
    in fifty has a sustained drop, one in forty is cut off at night three times."""
    rng = np.random.default_rng((19, i))
    end = int(stop[-1])
    scale = rng.uniform(0.4, 2.5)
    night = rng.uniform(0.5, 3.0)  # some customers use far more at night
    base = np.tile(SHAPE * np.where(np.arange(96) < 28, night, 1.0), DAYS) * scale
    wh = rng.poisson(base).astype(np.int64)
    if i % 50 == 0:
        wh[len(wh) // 2 :] //= 3
    series = Series(f"m{i:05d}", "electricity", "flat", "UTC", start, stop, wh)
    amps = wh * (3600 / SLOT_S) / 230  # the mean current that draws the record's energy at 230 V
    samples = Samples(stop, amps, 10_000 + np.cumsum(wh))
    cutoffs = [end - d * DAY_S - 3 * 3600 for d in range(1, 4)] if i % 40 == 0 else []
    return CustomerData(
        id=f"c{i:05d}", protected=i % 97 == 0, opted_out=i % 89 == 0, service_class="home",
        currency="USD", balance=int(rng.integers(0, 5_000)),
        meters=[MeterData(series, [], cutoffs, [], samples)],
        spend=[(end - d * DAY_S, int(rng.integers(50, 400))) for d in range(30)],
        topups=[(end - d * 7 * DAY_S, 1_000) for d in range(12)], late_bills=0,
        offer_tariffs=["tou", "saver"],
    )  # fmt: skip


def run(n: int) -> tuple[float, float, float, dict[str, int]]:
    """The peer comparison of the population, then each customer's analysis; each customer's
    records are made just before its analysis (untimed) and dropped after it. Returns the
    seconds spent making records, analysing (wall and CPU) and the counts."""
    settings = InsightsSettings()
    start, stop = grid()
    made = wall = cpu = 0.0
    values = {}
    for i in range(n):
        t0 = time.perf_counter()
        s = customer(i, start, stop).meters[0].series
        t1, c1 = time.perf_counter(), time.process_time()
        values[s.meter] = daily_average(int(s.wh.sum()), int(s.start[0]), int(s.end[-1]))
        made += t1 - t0
        wall += time.perf_counter() - t1
        cpu += time.process_time() - c1
    t1, c1 = time.perf_counter(), time.process_time()
    peers: dict[str, Comparison] = compare_all(values, dict.fromkeys(values, ("home", "flat")))
    wall += time.perf_counter() - t1
    cpu += time.process_time() - c1
    counts = {"offers": 0, "tariff_offers": 0, "anomalies": 0, "drops_found": 0,
              "false_anomalies": 0, "withheld": 0}  # fmt: skip
    for i in range(n):
        t0 = time.perf_counter()
        c = customer(i, start, stop)
        t1, c1 = time.perf_counter(), time.process_time()
        result = analyse(c, TARIFFS, peers, NOW, settings)
        wall += time.perf_counter() - t1
        cpu += time.process_time() - c1
        made += t1 - t0
        counts["offers"] += len(result.offers)
        counts["tariff_offers"] += sum(o.kind == "tariff" for o in result.offers)
        counts["anomalies"] += len(result.anomalies)
        dropped = i % 50 == 0
        counts["drops_found"] += dropped and any(a.kind == "change_point" for a in result.anomalies)
        counts["false_anomalies"] += sum(not dropped or a.kind != "change_point"
                                         for a in result.anomalies)  # fmt: skip
        counts["withheld"] += result.withheld is not None
    return made, wall, cpu, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.insights", description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--traced", type=int, default=200, help="customers in the traced pass")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    made_s, wall, cpu, counts = run(args.customers)
    load_after = os.getloadavg()[0]
    records = args.customers * DAYS * 96
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracemalloc.start()
    run(min(args.traced, args.customers))
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    goal = GOAL_S * args.customers / 10_000
    data: dict[str, Any] = {
        "customers": args.customers, "days": DAYS, "records": records,
        "records_made_s": round(made_s, 1), "analysis_wall_s": round(wall, 1),
        "analysis_cpu_s": round(cpu, 1), "customers_per_s": round(args.customers / wall, 1),
        "peak_rss_mb": round(peak_rss_mb), "traced_customers": min(args.traced, args.customers),
        "traced_peak_mb": round(traced_peak / 2**20, 1), "goal_s": goal, "met": wall <= goal,
        "load_average_1m": [round(load_before, 1), round(load_after, 1)],
        **counts,
    }  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"{'figure':<56} {'value':>10}")
    for label, key in (
        ("customers", "customers"),
        ("15-minute records", "records"),
        ("records made in memory, apart (s)", "records_made_s"),
        ("analysis, wall (s)", "analysis_wall_s"),
        ("analysis, CPU (s)", "analysis_cpu_s"),
        ("customers per second", "customers_per_s"),
        ("peak resident memory, whole run (MB)", "peak_rss_mb"),
        ("peak traced Python allocations, traced pass (MB)", "traced_peak_mb"),
        ("offers made", "offers"),
        ("tariff offers", "tariff_offers"),
        ("anomalies", "anomalies"),
        ("sustained drops found (one customer in fifty has one)", "drops_found"),
        ("anomalies on customers without a drop (false positives)", "false_anomalies"),
        ("customers whose offers were withheld", "withheld"),
        ("machine load average, 1 min, before and after", "load_average_1m"),
        ("goal: analysis under (s)", "goal_s"),
        ("met", "met"),
    ):
        print(f"{label:<56} {data[key]!s:>10}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
