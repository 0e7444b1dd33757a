"""Hub ingest benchmark: usage records through Mosquitto into the ledger, against raw paho.

Starts Mosquitto on a free loopback port, seeds a database (SQLite file, or a throwaway
PostgreSQL server), starts the hub's ingest service (``python -m hub.ingest.runner``) and, in
the same run, a bare paho subscriber (QoS 1, auto-acknowledged) on the same topics. Then
publisher processes (simulated gateways) send ``--records`` usage records at QoS 1. Measured,
each from the first publish: the rate at which the bare subscriber received the stream, and
the rate at which the hub settled it (records in ``posted_usage``). Invariants are checked
after. Goal: settled >= 0.8 x raw.

    python -m bench.hub_ingest [--records 200000] [--db sqlite|postgres|both]
                               [--per-message 1] [--gateways 20] [--meters 50] [--hubs 1]

``--hubs 2`` runs the hub as two processes of one ingest group (PostgreSQL only).

``--mode backlog`` (also run by default) measures capacity instead: the consumers are away
while the stream is published, then each drains it alone; the bare subscriber drains two
sessions, one before and one after the hub, and the faster drain is the baseline.

Prints a table and writes ``bench/results/hub_ingest.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine, func, select

from bench.pg_stats import STATS_OPTS
from hub.db import make_engine, migrate, read_tx
from hub.ledger import check_invariants
from hub.models import metadata
from tests.hub.seed import seed_world

RESULTS = Path(__file__).resolve().parent / "results" / "hub_ingest.json"
GOAL = 0.8
SETTING = re.compile(r"[a-z_][a-z0-9_.]*=[^\s'\"]+")  # a server setting, name=value
WINDOW = 20_000  # QoS 1 messages a publisher keeps unacknowledged
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


def start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / "mosquitto.conf"
    # max_queued_messages 0: no limit, the hub's persistent session may fall behind the
    # publishers without Mosquitto dropping anything (hardware/mosquitto/smsa.conf).
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\n"
                    "log_type error\n")  # fmt: skip
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(conf)])
    wait_port(port)
    return proc, port


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- PostgreSQL (a throwaway server, as the test fixture does) ------------------------------


def _as_pg(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def start_postgres(stats: bool = False, settings: Sequence[str] = ()) -> tuple[Path, Path, str]:
    """A throwaway PostgreSQL server with a database ``bench``: its binaries' directory, its
    root directory and the database's URL. ``stats``: with ``pg_stat_statements``
    (``bench.pg_stats``), the extension created in ``bench``. ``settings``: server settings,
    each ``name=value`` (the server's defaults otherwise)."""
    for setting in settings:
        if not SETTING.fullmatch(setting):
            raise SystemExit(f"PostgreSQL setting {setting!r}: expected name=value, "
                             "the value without spaces or quotes")  # fmt: skip
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise SystemExit("PostgreSQL server binaries not found under /usr/lib/postgresql")
    bindir = Path(found[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="smsa-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    root.chmod(0o700)
    data, port = root / "data", free_port()
    subprocess.run(_as_pg([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A",
                           "trust", "--no-sync"]), check=True, capture_output=True)  # fmt: skip
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=50"
    if stats:
        opts += " " + STATS_OPTS
    opts += "".join(f" -c {setting}" for setting in settings)
    ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts]
    started = subprocess.run(_as_pg([*ctl, "-w", "start"]), check=False, capture_output=True)
    if started.returncode != 0:
        log = (root / "log").read_text(errors="replace").strip().splitlines()
        shutil.rmtree(root, ignore_errors=True)
        raise SystemExit(f"PostgreSQL did not start: {log[-1] if log else 'no log'}")
    dsn = f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(b"CREATE DATABASE bench")
    if stats:
        with psycopg.connect(dsn.replace("dbname=postgres", "dbname=bench"), autocommit=True) as c:
            c.execute(b"CREATE EXTENSION pg_stat_statements")
    return bindir, root, f"postgresql+psycopg://postgres@127.0.0.1:{port}/bench"


def stop_postgres(bindir: Path, root: Path) -> None:
    subprocess.run(_as_pg([str(bindir / "pg_ctl"), "-D", str(root / "data"), "-m", "fast",
                           "stop"]), check=False, capture_output=True)  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres(stats: bool = False, settings: Sequence[str] = ()) -> Iterator[tuple[Path, str]]:
    """A throwaway PostgreSQL server (:func:`start_postgres`) for the block, stopped and removed
    after it: its data directory and the database's URL."""
    bindir, root, url = start_postgres(stats, settings)
    try:
        yield root / "data", url
    finally:
        stop_postgres(bindir, root)


def process_cpu_s(pid: int) -> float:
    """CPU seconds used so far by the process ``pid`` (``/proc``, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu_s(data: Path) -> float:
    """CPU seconds used so far by the PostgreSQL server of ``data``: its postmaster, its live
    processes, and the children it has reaped (``/proc``, Linux)."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    return sum(own + (reaped if pid == postmaster else 0.0)
               for pid, ppid, own, reaped in processes()
               if postmaster in (pid, ppid))  # fmt: skip


def processes() -> list[tuple[int, int, float, float]]:
    """Every live process: (pid, parent pid, CPU seconds it used, CPU seconds of the children
    it has reaped) (``/proc``, Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        own = (int(fields[11]) + int(fields[12])) / tick
        reaped = (int(fields[13]) + int(fields[14])) / tick
        out.append((int(Path(stat).parent.name), int(fields[1]), own, reaped))
    return out


# -- child roles -------------------------------------------------------------------------------


def raw_subscriber(port: int, expect: int, backlog: bool = False, index: int = 0) -> None:
    """Count usage records as a bare paho QoS 1 subscriber; print JSON when all arrived.
    ``backlog``: on a persistent session, the ``index``th (``expect`` 0: only create it, then
    leave)."""
    got = 0
    first = last = 0.0
    started = time.time()

    def on_message(_c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        nonlocal got, first, last
        last = time.time()
        if not got:
            first = last
        got += msg.payload.count(b'"seq"')

    subscribed = False

    def on_subscribe(*_a: Any) -> None:
        nonlocal subscribed
        subscribed = True
        print("ready", flush=True)

    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"bench-raw-{index}", protocol=mqtt.MQTTv5)  # fmt: skip
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    if backlog:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
    else:
        client.connect("127.0.0.1", port)
    client.subscribe("smsa/v1/gw/+/usage", qos=1)
    deadline = time.monotonic() + 3600
    # expect 0: only until subscribed (the session then queues what is published)
    while (got < expect or not subscribed) and time.monotonic() < deadline:
        client.loop(0.05)
    client.disconnect()
    cpu_ms = int(time.process_time() * 1000)
    print(json.dumps({"records": got, "first": first, "last": last, "cpu_ms": cpu_ms,
                      "started": started}), flush=True)  # fmt: skip


def publisher(args: argparse.Namespace) -> None:
    """Publish this publisher's share of the stream at QoS 1; print JSON timings."""
    port, index, total_publishers = args.port, args.index, args.publishers
    gateways, meters, records = args.gateways_list.split(","), args.meters, args.records
    per_message = args.per_message
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"bench-pub-{index}")  # fmt: skip
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    all_meters = [f"{gw}-m{m}" for gw in gateways for m in range(meters)]
    mine = all_meters[index::total_publishers]
    rounds = -(-records // len(all_meters))
    step = timedelta(minutes=15)
    infos: deque[mqtt.MQTTMessageInfo] = deque()
    messages = 0
    first = time.time()
    sent = 0
    quota = len([i for i in range(records) if all_meters[i % len(all_meters)] in set(mine)])
    batch: dict[str, list[str]] = {}
    for r in range(rounds):
        start = T0 + step * r
        s, e = start.isoformat(), (start + step).isoformat()
        for meter in mine:
            if sent >= quota:
                break
            gw = meter.rsplit("-m", 1)[0]
            reg = 1000 + r * 137
            batch.setdefault(gw, []).append(
                f'{{"meter":"{meter}","seq":{r + 1},"start":"{s}","end":"{e}",'
                f'"import_start":{reg},"import_end":{reg + 137}}}'
            )
            sent += 1
            if len(batch[gw]) >= per_message:
                payload = ('{"v":1,"records":[' + ",".join(batch.pop(gw)) + "]}").encode()
                infos.append(client.publish(f"smsa/v1/gw/{gw}/usage", payload, qos=1))
                messages += 1
                while len(infos) > WINDOW:  # paho's message ids wrap at 65535
                    infos.popleft().wait_for_publish(600)
    for gw, recs in batch.items():
        payload = ('{"v":1,"records":[' + ",".join(recs) + "]}").encode()
        infos.append(client.publish(f"smsa/v1/gw/{gw}/usage", payload, qos=1))
        messages += 1
    for info in infos:
        info.wait_for_publish(600)
    done = time.time()
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"records": sent, "messages": messages, "first": first, "done": done}),
          flush=True)  # fmt: skip


# -- one run ---------------------------------------------------------------------------------


@dataclass
class Stack:
    url: str
    port: int
    engine: Engine
    gateways: list[str]
    procs: list[subprocess.Popen[str]]
    pg_data: Path | None = None  # PostgreSQL's data directory (its postmaster.pid)
    broker_pid: int = 0


@contextmanager
def stack(db_kind: str, args: argparse.Namespace, tmp: Path) -> Iterator[Stack]:
    """A database (SQLite file or throwaway PostgreSQL) with the seeded world, and Mosquitto;
    every process put in ``procs`` is stopped at the end."""
    pg: tuple[Path, Path, str] | None = None
    if db_kind == "postgres":
        pg = start_postgres(stats=getattr(args, "pg_stats", False),
                            settings=getattr(args, "pg_set", None) or ())  # fmt: skip
        url = pg[2]
    else:
        url = f"sqlite:///{tmp / 'bench.db'}"
    broker, port = start_broker(tmp)
    procs: list[subprocess.Popen[str]] = []
    try:
        migrate(url)
        engine = make_engine(url)
        world = seed_world(engine, gateways=args.gateways, meters_per_gateway=args.meters)
        pg_data = pg[1] / "data" if pg is not None else None
        yield Stack(url, port, engine, sorted(world.gateways), procs, pg_data, broker.pid)
        engine.dispose()
    finally:
        for proc in procs:
            stop(proc)
        stop(broker)
        if pg is not None:
            stop_postgres(pg[0], pg[1])


def start_hub(st: Stack, args: argparse.Namespace) -> list[subprocess.Popen[str]]:
    """The hub: ``args.hubs`` runner processes, one ingest group when more than one (each then
    takes a slot, ``hub.ingest.group``: the same slots, so the same sessions, every start)."""
    group = ["--group", "bench"] if args.hubs > 1 else []
    cmd = [sys.executable, "-m", "hub.ingest.runner", "--db", st.url, "--mqtt",
           f"mqtt://127.0.0.1:{st.port}", "--client-id", "bench-hub", *group,
           "--batch-size", str(args.batch_size), "--batch-wait", "0.05", "--counters",
           "--workers", str(args.workers), "--progress", "0.05"]  # fmt: skip
    hubs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(args.hubs)]
    st.procs.extend(hubs)
    return hubs


def start_raw(
    st: Stack, records: int, *, backlog: bool = False, index: int = 0
) -> subprocess.Popen[str]:
    extra = ["--backlog-session", "--index", str(index)] if backlog else []
    raw = subprocess.Popen(
        [sys.executable, "-m", "bench.hub_ingest", "--role", "raw", "--port", str(st.port),
         "--records", str(records), *extra],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    st.procs.append(raw)
    return raw


def wait_ready(*procs: subprocess.Popen[str]) -> float:
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("a consumer did not start")
    return time.time()


def settle(
    hubs: list[subprocess.Popen[str]],
    args: argparse.Namespace,
    others: tuple[subprocess.Popen[str], ...],
) -> tuple[float, list[tuple[float, int]], dict[str, Any]]:
    """Wait until the hub's processes report every record posted: (time, timeline, counters
    added up); they are stopped. Each prints its posted count (committed records) as it
    changes: polling the database instead would load it with count(*) queries during the
    measurement."""
    progress: list[queue.Queue[str]] = [queue.Queue() for _ in hubs]
    for hub, lines in zip(hubs, progress, strict=True):
        threading.Thread(target=_lines, args=(hub, lines), daemon=True).start()
    timeline: list[tuple[float, int]] = []
    deadline = time.monotonic() + args.timeout
    posted = [0] * len(hubs)
    while time.monotonic() < deadline:
        at = 0.0
        for k, lines in enumerate(progress):
            try:
                report = json.loads(lines.get(timeout=0.5 / len(hubs)))
            except queue.Empty:
                continue
            posted[k] = max(posted[k], int(report.get("posted", 0)))
            at = max(at, float(report["at"]))
        if at:
            timeline.append((at, sum(posted)))
        if sum(posted) >= args.records:
            return at, timeline, stop_hubs(hubs, progress)
        if any(p.poll() not in (None, 0) for p in (*others, *hubs)):
            raise SystemExit("a publisher or consumer failed")
    raise SystemExit(f"only {sum(posted)} of {args.records} records settled in time")


def checked(st: Stack, args: argparse.Namespace) -> bool:
    """Every record in the database once, and the ledger's invariants: True when they hold."""
    posted = metadata.tables["posted_usage"]
    with read_tx(st.engine) as conn:
        in_db = int(conn.execute(select(func.count()).select_from(posted)).scalar_one())
        report = check_invariants(conn)
    if in_db != args.records:
        raise SystemExit(f"the hub reported {args.records} posted, the database has {in_db}")
    return bool(report["ok"])


def figures(
    args: argparse.Namespace,
    raw_s: float,
    settled_s: float,
    raw: dict[str, Any],
    hub: dict[str, Any],
) -> dict[str, Any]:
    """Rates, the ratio against the goal, and CPU per record of the raw subscriber, of all the
    hub's processes (hub, MQTT pump, settlers; start-up included) and of its settling work."""
    n = args.records
    hub_ms = hub["process_cpu_ms"] + hub["pump_cpu_ms"] + hub["settler_cpu_ms"]
    return {
        "raw_records_per_s": round(n / raw_s),
        "settled_records_per_s": round(n / settled_s),
        "ratio": round(raw_s / settled_s, 3),
        "goal": GOAL,
        "met": raw_s / settled_s >= GOAL,
        "raw_cpu_us_per_record": round(raw["cpu_ms"] * 1000 / n),
        "hub_cpu_us_per_record": round(hub_ms * 1000 / n),
        "worker_cpu_us_per_record": round(hub["worker_cpu_ms"] * 1000 / n),
        # delivery receipts back to the gateways (issue 12): messages and payload bytes
        "receipts_per_1000_records": round(hub.get("receipts", 0) * 1000 / n, 2),
        "receipt_bytes_per_1000_records": round(hub.get("receipt_bytes", 0) * 1000 / n),
        "hub_counters": hub,
    }


def run(db_kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Live: the hub and the raw subscriber consume the stream while it is published."""
    with stack(db_kind, args, tmp) as st:
        hub, raw = start_hub(st, args), start_raw(st, args.records)
        wait_ready(*hub, raw)
        pubs = [_start_publisher(args, st.port, st.gateways, i) for i in range(args.publishers)]
        st.procs.extend(pubs)
        settled_at, timeline, hub_counters = settle(hub, args, (*pubs, raw))
        pub_results = [json.loads(_last_line(p)) for p in pubs]
        raw_result = json.loads(_last_line(raw))
        invariants_ok = checked(st, args)
        first = min(p["first"] for p in pub_results)
        published_at = max(p["done"] for p in pub_results)
        raw_s = raw_result["last"] - first
        settled_s = settled_at - first
        messages = sum(p["messages"] for p in pub_results)
        return {
            "mode": "live",
            "db": db_kind,
            "records": args.records,
            "messages": messages,
            "per_message": args.per_message,
            "batch_size": args.batch_size,
            "workers": args.workers,
            "hubs": args.hubs,
            "meters": args.gateways * args.meters,
            "publish_s": round(published_at - first, 3),
            "raw_s": round(raw_s, 3),
            "settled_s": round(settled_s, 3),
            "raw_messages_per_s": round(messages / raw_s),
            **figures(args, raw_s, settled_s, raw_result, hub_counters),
            "invariants_ok": invariants_ok,
            # records settled by each whole second after the first publish
            "settled_by_second": _by_second(timeline, first),
        }


def run_backlog(db_kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Backlog: the consumers are away while the stream is published (their persistent
    sessions queue it, as after an outage), then each drains it alone: capacity, with no
    publisher competing for the CPU. The raw subscriber drains two sessions, one before and one
    after the hub, and the faster drain is the baseline (this machine's speed drifts)."""
    with stack(db_kind, args, tmp) as st:
        hubs = start_hub(st, args)  # create the sessions, then leave
        wait_ready(*hubs, *(start_raw(st, 0, backlog=True, index=i) for i in (0, 1)))
        for hub in hubs:
            hub.terminate()
            hub.wait(60)
        pubs = [_start_publisher(args, st.port, st.gateways, i) for i in range(args.publishers)]
        st.procs.extend(pubs)
        for pub in pubs:
            _last_line(pub)
        before = json.loads(_last_line(start_raw(st, args.records, backlog=True, index=0)))
        hubs = start_hub(st, args)
        ready_at = wait_ready(*hubs)
        settled_at, timeline, hub_counters = settle(hubs, args, ())  # the hub has stopped
        after = json.loads(_last_line(start_raw(st, args.records, backlog=True, index=1)))
        invariants_ok = checked(st, args)
        drains = [(r["last"] - r["started"], r) for r in (before, after)]
        raw_s, raw_result = min(drains, key=lambda d: d[0])
        settled_s = settled_at - ready_at
        return {
            "mode": "backlog", "db": db_kind, "records": args.records,
            "batch_size": args.batch_size, "workers": args.workers, "hubs": args.hubs,
            "raw_s": round(raw_s, 3), "settled_s": round(settled_s, 3),
            "raw_s_before_and_after": [round(s, 3) for s, _r in drains],
            **figures(args, raw_s, settled_s, raw_result, hub_counters),
            "invariants_ok": invariants_ok,
            "settled_by_second": _by_second(timeline, ready_at),
        }  # fmt: skip


def _start_publisher(
    args: argparse.Namespace, port: int, gateways: list[str], index: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.hub_ingest", "--role", "publish", "--port", str(port),
         "--records", str(args.records), "--gateways-list", ",".join(gateways),
         "--meters", str(args.meters), "--per-message", str(args.per_message),
         "--index", str(index), "--publishers", str(args.publishers)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def _by_second(timeline: list[tuple[float, int]], first: float) -> list[int]:
    out: list[int] = []
    for at, n in timeline:
        second = int(at - first)
        while len(out) <= second:
            out.append(out[-1] if out else 0)
        out[second] = n
    return out


def _lines(proc: subprocess.Popen[str], into: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            into.put(line)


def stop_hubs(hubs: list[subprocess.Popen[str]], lines: list[queue.Queue[str]]) -> dict[str, int]:
    """Stop the hub processes (each prints its counters as it leaves): their counters added up.
    ``lines``: each one's output lines, read by ``_lines``."""
    counters: dict[str, int] = {}
    for hub, out in zip(hubs, lines, strict=True):
        hub.terminate()
        hub.wait(60)
        for name, value in json.loads(_drain(out)[-1]).items():
            counters[name] = counters.get(name, 0) + value
    return counters


def _drain(lines: queue.Queue[str]) -> list[str]:
    out = []
    while True:
        try:
            out.append(lines.get(timeout=1.0))
        except queue.Empty:
            return out


def _last_line(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=600)
    lines = [line for line in out.splitlines() if line.strip()]
    return lines[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub_ingest")
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--per-message", type=int, default=1)
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--meters", type=int, default=50, help="meters per gateway")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument(
        "--batch-size",
        default="10000",
        help="the hub's batch size (default: the hub's own); a comma list runs each",
    )
    parser.add_argument("--workers", type=int, default=2, help="the hub's settling processes")
    parser.add_argument(
        "--hubs", type=int, default=1,
        help="hub processes; more than one: an ingest group (PostgreSQL, hub.ingest.group)",
    )  # fmt: skip
    parser.add_argument("--timeout", type=float, default=1800)
    parser.add_argument(
        "--mode",
        choices=["live", "backlog", "both"],
        default="both",
        help="live: consume while the stream is published; backlog: each consumer drains the "
        "whole stream alone after it was published (capacity)",
    )
    # child roles
    parser.add_argument("--role", choices=["raw", "publish"], help=argparse.SUPPRESS)
    parser.add_argument("--backlog-session", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--gateways-list", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "raw":
        raw_subscriber(args.port, args.records, backlog=args.backlog_session, index=args.index)
        return 0
    if args.role == "publish":
        publisher(args)
        return 0
    if args.records < 1 or args.per_message < 1 or args.publishers < 1:
        parser.error("--records, --per-message and --publishers must be >= 1")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.hubs > 1 and kinds != ["postgres"]:
        parser.error("--hubs above 1 needs --db postgres (an ingest group)")
    try:
        sizes = [int(s) for s in str(args.batch_size).split(",")]
    except ValueError:
        parser.error("--batch-size takes integers, e.g. 500 or 500,5000")
    results = []
    with tempfile.TemporaryDirectory(prefix="smsa-bench-") as tmp:
        modes = {"live": [run], "backlog": [run_backlog], "both": [run, run_backlog]}[args.mode]
        for size in sizes:
            for kind in kinds:
                for how in modes:
                    sub = Path(tmp) / f"{kind}-{size}-{how.__name__}"
                    sub.mkdir()
                    one = argparse.Namespace(**{**vars(args), "batch_size": size})
                    results.append(how(kind, one, sub))
    header = (f"{'mode':<8}{'db':<9}{'batch':>6}{'workers':>8}{'records':>9}{'raw rec/s':>11}"
              f"{'settled rec/s':>15}{'ratio':>7}{'goal':>6}{'invariants':>12}"
              "  cpu us/rec: raw   hub  worker  receipts/1k  bytes/1k")  # fmt: skip
    print(header)
    for r in results:
        print(f"{r['mode']:<8}{r['db']:<9}{r['batch_size']:>6}{r['workers']:>8}{r['records']:>9}"
              f"{r['raw_records_per_s']:>11}"
              f"{r['settled_records_per_s']:>15}{r['ratio']:>7}{'met' if r['met'] else 'MISS':>6}"
              f"{'ok' if r['invariants_ok'] else 'FAILED':>12}{r['raw_cpu_us_per_record']:>17}"
              f"{r['hub_cpu_us_per_record']:>6}{r['worker_cpu_us_per_record']:>8}"
              f"{r['receipts_per_1000_records']:>13}"
              f"{r['receipt_bytes_per_1000_records']:>10}")  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "hub_ingest", "results": results}, indent=2) + "\n")
    return 0 if all(r["invariants_ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
