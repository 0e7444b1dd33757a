"""Fleet simulator: many gateways publishing usage straight to the broker, against the hub.

Starts Mosquitto, a throwaway PostgreSQL (or a SQLite file) seeded with ``--gateways`` x
``--meters`` meters, and the hub's ingest (``--hubs`` processes; more than one form an ingest
group). Publisher processes then play the gateways, as a real fleet sends: each gateway one QoS
1 message per report on its own topic ``smsa/v1/gw/{gw}/usage`` holding one 15-minute record
per meter (``--meters`` records a message), seqs and registers continuing from report to
report: first ``--warm-up-rounds`` reports from every gateway, each round settled before the
next, and nothing of them measured, then at the offered rate of each step of ``--rates``
(records/s, for ``--step-s`` seconds each). A meter's first two reports are not the steady
state of a fleet that has reported for years: after the first the hub sends every meter its
first credit state and stores its credit memory; the second is the first its agent works out
alone, and each settler builds the meter's digest again, as its customer's flags (with the
memory) changed. Two rounds by default; 1 measures the second reports too. The gateways
listen for their receipts (``smsa/v1/gw/{gw}/receipt``, published by the hub after each
committed batch): a record's latency is from its publish to the receipt that settles it, as
the gateway sees it. They acknowledge the hub's commands (each meter's first credit state) as
their agents would.

Per step it reports the offered and the settled rate (records receipted during the step window,
divided by its length: it lags the offered rate by the latency), latency percentiles of the
records published in the step (after a drain of ``DRAIN_S``; a record never receipted has no
latency), and what was still unreceipted at the end, and where a settled record's CPU went (the
hub's processes, the PostgreSQL server, Mosquitto and the publishers, from the first step's
start to the end of the drain, and per step over the records posted in it), and how busy the
machine's cores were in each step (``busy``: near 1, every part waits for a core), and on
PostgreSQL the server's WAL per settled record (``bench.pg_stats.wal``) and its checkpoints over
the same time. ``--pg-set name=value`` runs the server with a setting of its own (the server's
defaults otherwise: ``docs/scaling.md`` 2.6 measured a sized WAL and cache). The hub keeps
up with a step when at least ``KEEP_UP`` of the step's records were settled within ``MAX_P95_S``
of their publishing and the median latency grew by less than ``MAX_GROWTH_S`` from the step's
first quarter to its last (a hub falling behind has a latency that grows through the step). A
record's latency counts from when its report was due, not when it went out: on a busy machine
the publishers fall behind their schedule (``behind s``: the most any report was late), and that
delay counts against the hub, whose processes share the machine with them. A step's rate in
records/s is a fleet of ``rate x 900`` meters at 15-minute reporting: the simulated meters
report more often than every 15 minutes (each record still covers 15 minutes), so the seeded
database is small; a real fleet's larger tables and caches are not measured here. Mind the
fleet's size: the hub settles a batch's records of one meter (and of one gateway) together, and
in a real fleet a batch of a few seconds holds one record of each meter. A meter of a simulated
fleet reports every ``gateways x meters / rate`` seconds; when that is shorter than a batch's
few seconds, the hub's work per meter and per gateway (rating state, progress, credit, receipts)
is shared by several records and the benchmark is optimistic (``docs/scaling.md`` 2.3: 10,000
meters against 30,000 at the same rate).

    python -m bench.fleet [--db postgres] [--gateways 3000] [--meters 10]
                          [--rates 4000,5000,6000,7000] [--step-s 60] [--hubs 1]
                          [--pg-stats] [--pg-set NAME=VALUE ...]

The defaults are the realistic shape (30,000 meters: about one record of each meter per batch
at these rates; seeding them takes about five minutes).

Prints a table and writes ``bench/results/fleet.json``.
"""

from __future__ import annotations

import argparse
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil

from bench import pg_stats
from bench.hub_ingest import (
    T0,
    Stack,
    _lines,
    process_cpu_s,
    processes,
    server_cpu_s,
    stack,
    start_hub,
    stop_hubs,
    wait_ready,
)
from protocol.topics import parse, topic

RESULTS = Path(__file__).resolve().parent / "results" / "fleet.json"
KEEP_UP = 0.97  # of a step's records settled within MAX_P95_S of their publishing
MAX_P95_S = 10.0
MAX_GROWTH_S = 2.0  # the median latency may grow this much from a step's first quarter to its last
DRAIN_S = 30.0  # after the last step, how long receipts are awaited
WARM_UP_S = 300.0  # how long the warm-up round may take to be receipted
SAMPLES = 5000  # latencies each publisher reports per step (evenly spaced sample)
SUBSCRIBE_CHUNK = 500  # topic filters per SUBSCRIBE packet


class Gateways:
    """One publisher's share of the fleet: per gateway its meters' next seq and register."""

    def __init__(self, gateways: list[str], meters: int) -> None:
        self.gateways = gateways
        self.meters = meters
        self.round = dict.fromkeys(gateways, 0)
        self.sent: dict[tuple[str, int], float] = {}  # (meter, seq) -> publish time
        self.lock = threading.Lock()

    def report(self, gw: str, due: float) -> bytes:
        """The gateway's next message: one record per meter for the next 15 minutes, due at
        ``due`` (``time.time()``): its records' latency counts from then, so a publisher that
        falls behind its schedule on a busy machine shows as latency, not as a lower rate."""
        r = self.round[gw]
        self.round[gw] = r + 1
        start = T0 + timedelta(minutes=15 * r)
        s, e = start.isoformat(), (start + timedelta(minutes=15)).isoformat()
        records = []
        with self.lock:
            for m in range(self.meters):
                meter = f"{gw}-m{m}"
                reg = 1000 + r * 137
                records.append(f'{{"meter":"{meter}","seq":{r + 1},"start":"{s}","end":"{e}",'
                               f'"import_start":{reg},"import_end":{reg + 137}}}')  # fmt: skip
                self.sent[(meter, r + 1)] = due
        return ('{"v":1,"records":[' + ",".join(records) + "]}").encode()

    def settled(self, payload: bytes, now: float) -> list[tuple[float, float]]:
        """(receipt time, publish time) of each record a receipt settles that is awaited."""
        got = []
        with self.lock:
            for meter, spans in json.loads(payload).get("usage", {}).items():
                for first, last in spans:
                    for seq in range(first, last + 1):
                        sent = self.sent.pop((meter, seq), None)
                        if sent is not None:
                            got.append((now, sent))
        return got


def _paced(client: mqtt.Client, gws: Gateways, per_s: float, start: float, end: float, *,
           k: int) -> tuple[int, int, float]:  # fmt: skip
    """Publish reports at ``per_s`` messages a second from ``start`` until ``end``, round
    robin over the gateways from the ``k``th: (messages sent, the next k, the longest a report
    was published after it was due, in seconds)."""
    n, behind = 0, 0.0
    while True:
        due = start + n / per_s
        if due >= end:
            return n, k, behind
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        else:
            behind = max(behind, -wait)
        gw = gws.gateways[k % len(gws.gateways)]
        client.publish(topic(gw, "usage"), gws.report(gw, due), qos=1)
        k += 1
        n += 1


class Receipts:
    """The gateways' receipts and commands: paho's network thread only queues each (arrival
    time, topic, payload); a thread of its own matches receipts to the records sent
    (``receipted``: (receipt time, publish time) per record) and acknowledges each command as
    the gateway's agent would (a ``command_ack`` event, applied):
    unacknowledged, the hub would send every meter's first credit state again and again, work
    a real fleet does not cause."""

    def __init__(self, gws: Gateways, client: mqtt.Client) -> None:
        self.gws = gws
        self.client = client
        self.receipted: list[tuple[float, float]] = []
        self.lock = threading.Lock()
        self._inbox: queue.SimpleQueue[tuple[float, str, bytes] | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((time.time(), msg.topic, bytes(msg.payload)))

    def _read(self) -> None:
        while (item := self._inbox.get()) is not None:
            at, name, payload = item
            gw, kind = parse(name)
            if kind == "cmd":
                self._acknowledge(gw, payload)
                continue
            got = self.gws.settled(payload, at)
            with self.lock:
                self.receipted.extend(got)

    def _acknowledge(self, gw: str, payload: bytes) -> None:
        cmd = json.loads(payload)
        ack = {"id": f"ack-{cmd['id']}"[:64], "kind": "command_ack", "meter": cmd["meter"],
               "at": datetime.now(UTC).isoformat(), "reason": "applied",
               "data": {"command": cmd["id"], "action": cmd["action"], "ok": True}}  # fmt: skip
        self.client.publish(topic(gw, "events"), json.dumps({"v": 1, "events": [ack]}), qos=1)

    def stop(self) -> None:
        self._inbox.put(None)
        self._reader.join()


def _warm_up(client: mqtt.Client, gws: Gateways, receipted: list[tuple[float, float]],
             rlock: threading.Lock) -> None:  # fmt: skip
    """One report from every gateway, settled before the steps start (a warm-up round: see the
    module docstring)."""
    for gw in gws.gateways:
        client.publish(topic(gw, "usage"), gws.report(gw, time.time()), qos=1)
    deadline = time.time() + WARM_UP_S
    while gws.sent and time.time() < deadline:
        time.sleep(0.2)
    if gws.sent:
        raise SystemExit(f"warm-up: {len(gws.sent)} records not receipted in {WARM_UP_S:g} s")
    with rlock:
        receipted.clear()


def fleet(args: argparse.Namespace) -> None:
    """A publisher: its gateways' reports paced to its share of each step's rate; prints one
    JSON line per step (and one after the drain)."""
    gws = Gateways(args.gateways_list.split(","), args.meters)
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"fleet-{args.index}", protocol=mqtt.MQTTv5)  # fmt: skip
    receipts = Receipts(gws, client)
    receipted, rlock = receipts.receipted, receipts.lock
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_message = receipts.on_message
    client.connect("127.0.0.1", args.port)
    # its own gateways' topics, not the wildcards: a real gateway hears only its own receipts
    # and commands, and every publisher parsing every receipt of the fleet cost CPU on the
    # machine the hub is measured on
    own = [(topic(gw, kind), 1) for gw in gws.gateways for kind in ("receipt", "cmd")]
    for i in range(0, len(own), SUBSCRIBE_CHUNK):
        client.subscribe(own[i : i + SUBSCRIBE_CHUNK])
    client.loop_start()
    _warm_up(client, gws, receipted, rlock)
    print("ready", flush=True)
    while (line := sys.stdin.readline().strip()) == "again":  # another warm-up round
        _warm_up(client, gws, receipted, rlock)
        print("ready", flush=True)
    start = float(line)  # the first step's start, the same for every publisher
    rates = [float(r) for r in args.rates.split(",")]
    share = len(gws.gateways) / args.total_gateways
    k = 0
    steps = []
    for rate in rates:
        per_s = rate * share / args.meters  # messages per second from this publisher
        end = start + args.step_s
        n, k, behind = _paced(client, gws, per_s, start, end, k=k)
        steps.append((rate, start, end, n * args.meters, behind))
        time.sleep(max(0.0, end - time.time()))
        start = end
    deadline = time.time() + DRAIN_S
    while time.time() < deadline and gws.sent:
        time.sleep(0.2)
    receipts.stop()
    with rlock:
        done = list(receipted)
    for rate, start, end, sent, behind in steps:
        # settled: receipted during the step; latency: of the records published in it (those
        # never receipted count as the longest, infinite)
        in_window = sum(1 for at, _sent in done if start <= at < end)
        lats = [at - sent_at for at, sent_at in done if start <= sent_at < end]
        lats += [float("inf")] * (sent - len(lats))
        quarter = (end - start) / 4
        first = [at - t for at, t in done if start <= t < start + quarter]
        last = [at - t for at, t in done if end - quarter <= t < end]
        print(json.dumps({"rate": rate, "sent": sent, "receipted": in_window,
                          "in_time": sum(1 for lat in lats if lat < MAX_P95_S),
                          "p50_first": _pct(first, 0.5), "p50_last": _pct(last, 0.5),
                          "behind_s": round(behind, 3),
                          "latencies": _sample(lats)}), flush=True)  # fmt: skip
    print(json.dumps({"unreceipted": len(gws.sent), "cpu_s": time.process_time()}), flush=True)
    client.disconnect()
    client.loop_stop()


def _sample(values: list[float]) -> list[float]:
    values = sorted(values)
    if len(values) <= SAMPLES:
        return values
    return [values[i * len(values) // SAMPLES] for i in range(SAMPLES)]


def _pct(values: list[float], p: float) -> float | None:
    """The ``p`` quantile; None if there are no values or it is a record never receipted."""
    if not values:
        return None
    value = sorted(values)[min(len(values) - 1, int(p * len(values)))]
    return round(value, 3) if value != float("inf") else None


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    with stack(args.db, args, tmp) as st:
        hubs = start_hub(st, args)
        wait_ready(*hubs)
        lines: list[queue.Queue[str]] = [queue.Queue() for _ in hubs]
        for hub, into in zip(hubs, lines, strict=True):  # read, or a full pipe stalls the hub
            threading.Thread(target=_lines, args=(hub, into), daemon=True).start()
        pubs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.fleet",
                    "--role",
                    "fleet",
                    "--port",
                    str(st.port),
                    "--gateways-list",
                    ",".join(st.gateways[i :: args.publishers]),
                    "--total-gateways",
                    str(len(st.gateways)),
                    "--meters",
                    str(args.meters),
                    "--rates",
                    args.rates,
                    "--step-s",
                    str(args.step_s),
                    "--index",
                    str(i),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(args.publishers)
        ]
        st.procs.extend(pubs)
        wait_ready(*pubs)  # each has had its first warm-up round settled
        _wait_blessed(st, args.gateways * args.meters)
        for _ in range(args.warm_up_rounds - 1):
            _tell(pubs, "again")
            wait_ready(*pubs)
        if args.pg_stats:
            pg_stats.reset(st.url)
        autovacuums = _autovacuums(st)
        wal_before = pg_stats.wal(st.url) if st.pg_data is not None else None
        posted_before = _posted(st)
        before = _cpu_s(st, hubs, pubs)
        t0 = time.time() + 1.0  # every publisher starts its first step at once
        rates = args.rates.split(",")
        samples = _StepSamples(t0, args.step_s, len(rates),
                            lambda: (_cpu_s(st, hubs, pubs), _posted(st)))  # fmt: skip
        samples.start()
        _tell(pubs, str(t0))
        outputs = []
        for pub in pubs:
            out, _ = pub.communicate(timeout=args.step_s * 10 * len(rates) + 600)
            outputs.append([json.loads(line) for line in out.splitlines() if line.strip()])
        after = _cpu_s(st, hubs, [])
        after["fleet"] = sum(o[-1]["cpu_s"] for o in outputs)  # the publishers have ended
        posted = _posted(st) - posted_before  # in the steps and the drain
        autovacuums = _autovacuums(st) - autovacuums
        wal = (pg_stats.wal_per_record(wal_before, pg_stats.wal(st.url), posted)
               if wal_before is not None else None)  # fmt: skip
        statements = pg_stats.breakdown(st.url, posted) if args.pg_stats else None
        counters = stop_hubs(hubs, lines)
        samples.join()
        steps = []
        for i, rate in enumerate(rates):
            rows = [o[i] for o in outputs]
            lats = [lat for r in rows for lat in r["latencies"]]
            sent = sum(r["sent"] for r in rows)
            settled = sum(r["receipted"] for r in rows)
            step = {
                "offered_records_per_s": round(sent / args.step_s),
                "settled_records_per_s": round(settled / args.step_s),
                "ratio": round(settled / sent, 3) if sent else None,
                "latency_s": {
                    "p50": _pct(lats, 0.5),
                    "p95": _pct(lats, 0.95),
                    "p99": _pct(lats, 0.99),
                },
                "fleet_at_15_min": round(sent / args.step_s) * 900,
                "target_rate": float(rate),
                "machine_busy": samples.shares[i],
                "cpu_us_per_record": samples.cpu_us[i],
            }
            in_time = sum(r["in_time"] for r in rows)
            step["in_time"] = round(in_time / sent, 3) if sent else None
            growth = [r["p50_last"] - r["p50_first"] for r in rows
                      if r["p50_last"] is not None and r["p50_first"] is not None]  # fmt: skip
            step["latency_growth_s"] = round(max(growth), 3) if growth else None
            step["publishers_behind_s"] = max(r["behind_s"] for r in rows)
            step["kept_up"] = bool(
                sent and in_time >= KEEP_UP * sent
                and len(growth) == len(rows) and max(growth) < MAX_GROWTH_S
            )  # fmt: skip
            steps.append(step)
        unreceipted = sum(o[-1]["unreceipted"] for o in outputs)
        return {"db": args.db, "hubs": args.hubs, "workers": args.workers,
                "gateways": args.gateways, "meters_per_gateway": args.meters,
                "step_s": args.step_s, "steps": steps,
                "unreceipted_after_drain": unreceipted,
                "autovacuums_in_steps": autovacuums,
                "pg_settings": args.pg_set or [],
                **({"pg_wal_per_record": wal} if wal is not None else {}),
                "credit_states": {"queued": counters.get("credit_states", 0),
                                  "derived": counters.get("credit_derived", 0)},
                "cpu_us_per_record": _us_per_record(before, after, posted),
                "cpu_window": {"records": posted,
                               "cpu_s": {k: round(after[k] - before[k], 2) for k in before}},
                **({"pg_statements": statements} if statements is not None else {})}  # fmt: skip


class _StepSamples(threading.Thread):
    """At each step's end: the share of the machine's CPU time (every core, every process) that
    was busy in the step (``psutil.cpu_percent``: all but idle and I/O wait; near 1, the hub,
    PostgreSQL, Mosquitto and the publishers wait for a core), and each part's CPU per record
    posted in the step (``sample``: CPU seconds per part, records posted so far), to tell a
    step that costs more per record from one that is only busier."""

    def __init__(
        self,
        t0: float,
        step_s: float,
        steps: int,
        sample: Callable[[], tuple[dict[str, float], int]],
    ) -> None:
        super().__init__(name="step-samples", daemon=True)
        self.t0, self.step_s, self.steps, self.sample = t0, step_s, steps, sample
        self.shares: list[float] = []
        self.cpu_us: list[dict[str, int]] = []

    def run(self) -> None:
        time.sleep(max(0.0, self.t0 - time.time()))
        psutil.cpu_percent()
        cpu, posted = self.sample()
        for i in range(1, self.steps + 1):
            time.sleep(max(0.0, self.t0 + i * self.step_s - time.time()))
            self.shares.append(round(psutil.cpu_percent() / 100, 3))
            now, now_posted = self.sample()
            self.cpu_us.append(_us_per_record(cpu, now, now_posted - posted))
            cpu, posted = now, now_posted


def _us_per_record(
    before: dict[str, float], after: dict[str, float], records: int
) -> dict[str, int]:
    """Each part's CPU microseconds per record between two ``_cpu_s`` readings."""
    return {k: round((after[k] - before[k]) * 1e6 / max(1, records)) for k in before}


def _tell(pubs: list[subprocess.Popen[str]], line: str) -> None:
    """One line to every publisher: ``again`` (another warm-up round) or the first step's start."""
    for pub in pubs:
        assert pub.stdin is not None
        pub.stdin.write(f"{line}\n")
        pub.stdin.flush()


def _wait_blessed(st: Stack, meters: int) -> None:
    """Until every meter's first credit state is queued (``hub.commands.baseline``) and
    acknowledged by its gateway: the steps then measure a fleet in its steady state, not the
    race of the first states and their acknowledgements with the first step's usage (which
    sent up to 7,000 more states, and showed as a first step's backlog)."""
    deadline = time.time() + WARM_UP_S
    while time.time() < deadline:
        with st.engine.connect() as conn:
            blessed = conn.exec_driver_sql(
                "SELECT count(*) FROM credit_baselines WHERE sent_at IS NOT NULL"
            ).scalar_one()
            open_ = conn.exec_driver_sql(
                "SELECT count(*) FROM commands WHERE status IN ('queued', 'sent')"
            ).scalar_one()
        if blessed >= meters and not open_:
            return
        time.sleep(0.2)
    raise SystemExit(f"warm-up: {meters - blessed} meters' first credit states not queued, "
                     f"{open_} commands not acknowledged")  # fmt: skip


def _autovacuums(st: Stack) -> int:
    """Autovacuum and autoanalyze runs finished so far on the hub's tables (PostgreSQL): the
    seeded tables start small, so they cross autovacuum's thresholds often while they grow."""
    if st.pg_data is None:
        return 0
    with st.engine.connect() as conn:
        return int(conn.exec_driver_sql(
            "SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) "
            "FROM pg_stat_user_tables"
        ).scalar_one())  # fmt: skip


def _posted(st: Stack) -> int:
    with st.engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM posted_usage").scalar_one())


def _cpu_s(st: Stack, hubs: list[subprocess.Popen[str]],
           pubs: list[subprocess.Popen[str]]) -> dict[str, float]:  # fmt: skip
    """CPU seconds used so far by each part: the hub's main processes (``hub``), their
    settlers and MQTT pumps, the PostgreSQL server, Mosquitto and the simulated fleet's
    publishers (``/proc``, Linux). Taken when the steps start and when the fleet has ended, so
    a record's CPU is that of the steps and the drain, not of the start-up and the warm-up
    round (whose first sight of every meter and first credit states grow with the fleet)."""
    runners = {hub.pid for hub in hubs}
    out = dict.fromkeys(("hub", "settlers", "pump"), 0.0)
    for pid, ppid, own, _reaped in processes():
        if pid in runners:
            out["hub"] += own
        elif ppid in runners:
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:  # ended meanwhile
                continue
            out["settlers" if b"hub.ingest.settler" in cmdline else "pump"] += own
    out["postgres"] = server_cpu_s(st.pg_data) if st.pg_data else 0.0
    out["mosquitto"] = process_cpu_s(st.broker_pid)
    out["fleet"] = sum(process_cpu_s(pub.pid) for pub in pubs)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--gateways", type=int, default=3000)
    parser.add_argument(
        "--meters", type=int, default=10, help="meters per gateway (records a message)"
    )
    parser.add_argument("--rates", default="4000,5000,6000,7000", help="records/s per step")
    parser.add_argument("--step-s", type=float, default=60.0)
    parser.add_argument("--hubs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--warm-up-rounds",
        type=int,
        default=2,
        help="reports from every gateway settled before the steps (at least 1)",
    )
    parser.add_argument(
        "--pg-stats",
        action="store_true",
        help="per-statement times from pg_stat_statements after the warm-up",
    )
    parser.add_argument(
        "--pg-set",
        action="append",
        metavar="NAME=VALUE",
        help="a PostgreSQL server setting (repeat for more; the server's defaults otherwise)",
    )
    parser.add_argument("--role", choices=["fleet"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gateways-list", help=argparse.SUPPRESS)
    parser.add_argument("--total-gateways", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "fleet":
        fleet(args)
        return 0
    if args.warm_up_rounds < 1:
        parser.error("--warm-up-rounds must be at least 1")
    if args.pg_set and args.db != "postgres":
        parser.error("--pg-set needs --db postgres")
    if args.hubs > 1 and args.db != "postgres":
        parser.error("--hubs above 1 needs --db postgres (an ingest group)")
    with tempfile.TemporaryDirectory(prefix="smsa-fleet-") as tmp:
        result = run(args, Path(tmp))
    print(f"{'offered/s':>10}{'settled/s':>10}{'in 10 s':>8}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}"
          f"{'growth s':>9}{'behind s':>9}{'busy':>6}"
          f"{'meters at 15 min':>18}  kept up")  # fmt: skip
    for s in result["steps"]:
        lat = s["latency_s"]
        print(f"{s['offered_records_per_s']:>10}{s['settled_records_per_s']:>10}"
              f"{s['in_time'] or 0:>8}{lat['p50'] or 0:>8}{lat['p95'] or 0:>8}{lat['p99'] or 0:>8}"
              f"{s['latency_growth_s'] or 0:>9}{s['publishers_behind_s']:>9}"
              f"{s['machine_busy']:>6}{s['fleet_at_15_min']:>18}"
              f"  {'yes' if s['kept_up'] else 'no'}")  # fmt: skip
    for s in result["steps"]:
        print(f"cpu us per record posted in the step at {s['offered_records_per_s']}/s: "
              + ", ".join(f"{k} {v}" for k, v in s["cpu_us_per_record"].items()))  # fmt: skip
    print(f"unreceipted after {DRAIN_S:g} s of drain: {result['unreceipted_after_drain']}")
    print(f"autovacuum and autoanalyze runs finished during the steps: "
          f"{result['autovacuums_in_steps']}")  # fmt: skip
    if "pg_wal_per_record" in result:
        wal = result["pg_wal_per_record"]
        print(f"PostgreSQL's WAL per settled record: {wal['wal_records']} records, "
              f"{wal['wal_bytes']} bytes, {wal['full_page_images']} full-page images; "
              f"checkpoints in the steps and the drain: {wal['checkpoints']}")  # fmt: skip
    states = result["credit_states"]
    print(
        f"credit states after usage: {states['queued']} queued, {states['derived']} left to "
        "the agents (hub.commands.baseline)"
    )
    print("cpu us per settled record: " + ", ".join(
        f"{k} {v}" for k, v in result["cpu_us_per_record"].items()))  # fmt: skip
    if "pg_statements" in result:
        print(pg_stats.table(result["pg_statements"]))
    RESULTS.parent.mkdir(exist_ok=True)
    into = RESULTS.with_name("fleet_pg_stats.json") if args.pg_stats else RESULTS
    into.write_text(json.dumps({"benchmark": "fleet", **result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
