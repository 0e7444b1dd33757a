"""Hub MQTT pump benchmark: the hub's pump process against a bare paho subscriber, each draining
the same queued stream of QoS 1 usage messages from Mosquitto on loopback.

The pump (``hub.ingest.transport.pump``, through ``PumpLink`` as the hub runs it) forwards every
message split by settler and acknowledges each forwarded chunk at once; the bare subscriber is paho
with its own acknowledgements (``python -m bench.hub_ingest --role raw``). Both sessions exist
before the stream is published, then each drains it alone. Reported: messages per second and CPU
per message of each consumer process, and the pump's rate over the bare subscriber's. Goal: the
pump is no slower than the bare subscriber (it is the hub's receive path; settling is measured by
``bench.hub_ingest``).

    python -m bench.pump_drain [--messages 100000]

Prints a table and writes ``bench/results/pump_drain.json``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from bench.hub_ingest import start_broker, stop
from hub.ingest.transport.messages import Cpu, Part, PumpEvent, Up
from hub.ingest.transport.pump_link import PumpConfig, PumpLink

HERE = Path(__file__).resolve().parent
GOAL = 1.0
WINDOW = 20_000  # publishes awaiting their PUBACK (paho's message ids wrap at 65,535)
PAYLOAD = (
    b'{"v":1,"records":[{"meter":"gw-0001-m1","seq":5,"start":"2026-01-01T00:00:00+00:00",'
    b'"end":"2026-01-01T00:15:00+00:00","import_start":1000,"import_end":1137}]}'
)


class PumpDrain:
    """A ``PumpLink`` whose parent side acknowledges every chunk as it arrives."""

    def __init__(self, url: str, expect: int) -> None:
        self.expect = expect
        self.got = 0
        self.cpu_s = 0.0
        self.up = threading.Event()
        self.done = threading.Event()
        self.stopped = threading.Event()
        cfg = PumpConfig(url=url, client_id="bench-pump", v5=True, session_expiry_s=3600,
                         receive_maximum=40_000, shards=2)  # fmt: skip
        self.link = PumpLink(cfg, self._on_messages, self._on_event)

    def _on_messages(self, parts: list[Part]) -> None:
        for part in parts:
            acks: dict[int, list[int]] = {}
            for _topic, _payload, _at, mid, _qos, generation in pickle.loads(part.pickled).items:
                acks.setdefault(generation, []).append(mid)
            for generation, mids in acks.items():
                self.link.ack(generation, mids)
            self.got += part.count
        if self.got >= self.expect:
            self.done.set()

    def _on_event(self, event: PumpEvent) -> None:
        if isinstance(event, Up):
            self.up.set()
        elif isinstance(event, Cpu):
            self.cpu_s = event.seconds
            self.stopped.set()


def publish(port: int, n: int) -> None:
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id="bench-pump-pub")  # fmt: skip
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos: deque[mqtt.MQTTMessageInfo] = deque()
    for i in range(n):
        infos.append(client.publish(f"smsa/v1/gw/gw-{i % 20:04d}/usage", PAYLOAD, qos=1))
        while len(infos) > WINDOW:
            infos.popleft().wait_for_publish(600)
    for info in infos:
        info.wait_for_publish(600)
    client.disconnect()
    client.loop_stop()


def raw(port: int, n: int) -> dict[str, Any]:
    import subprocess  # noqa: PLC0415 (only the raw consumer needs a child process)

    cmd = [sys.executable, "-m", "bench.hub_ingest", "--role", "raw", "--port", str(port),
           "--records", str(n), "--backlog-session", "--index", "0"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def drain_with_pump(url: str, n: int) -> tuple[float, float]:
    """(seconds from start to the last message, pump CPU seconds) draining ``n`` messages."""
    drain = PumpDrain(url, n)
    started = time.monotonic()
    drain.link.start()
    if not drain.done.wait(600):
        raise SystemExit(f"the pump drained {drain.got} of {n} messages in 600 s")
    seconds = time.monotonic() - started
    drain.link.stop()
    drain.stopped.wait(10)
    return seconds, drain.cpu_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pump_drain",
                                     description=__doc__.splitlines()[0])  # fmt: skip
    parser.add_argument("--messages", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.messages < 1:
        parser.error("--messages must be >= 1")
    n = args.messages
    broker, port = start_broker(Path(tempfile.mkdtemp(prefix="smsa-bench-pump-")))
    url = f"mqtt://127.0.0.1:{port}"
    try:
        sessions = PumpDrain(url, 0)  # create both persistent sessions, then leave
        sessions.link.start()
        if not sessions.up.wait(20):
            raise SystemExit("the pump did not subscribe")
        sessions.link.stop()
        raw(port, 0)
        publish(port, n)
        bare = raw(port, n)
        pump_s, pump_cpu = drain_with_pump(url, n)
    finally:
        stop(broker)
    raw_s = bare["last"] - bare["started"]
    result = {
        "messages": n,
        "raw_messages_per_s": round(n / raw_s),
        "pump_messages_per_s": round(n / pump_s),
        "ratio": round(raw_s / pump_s, 3),
        "goal": GOAL,
        "met": raw_s / pump_s >= GOAL,
        "raw_cpu_us_per_message": round(bare["cpu_ms"] * 1000 / n, 1),
        "pump_cpu_us_per_message": round(pump_cpu * 1e6 / n, 1),
    }
    print(f"{'consumer':<28} {'msg/s':>8} {'cpu us/msg':>11}")
    print(f"{'bare paho subscriber':<28} {result['raw_messages_per_s']:>8} "
          f"{result['raw_cpu_us_per_message']:>11}")  # fmt: skip
    print(f"{'hub MQTT pump':<28} {result['pump_messages_per_s']:>8} "
          f"{result['pump_cpu_us_per_message']:>11}")  # fmt: skip
    print(f"ratio {result['ratio']} (goal >= {GOAL}): {'met' if result['met'] else 'MISS'}")
    out = HERE / "results" / "pump_drain.json"
    out.write_text(json.dumps({"benchmark": "pump_drain", "result": result}, indent=2) + "\n")
    print(f"written {out.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
