"""Building usage streams and publishing them to a real broker, for the ingest tests."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import Engine, func, select

from hub.db import read_tx
from hub.models import metadata
from protocol.topics import topic

T0 = datetime(2026, 3, 30, 22, 0, tzinfo=UTC)  # crosses a month end in the stream


def records_for(
    meter: str, n: int, *, start_seq: int = 1, register: int | None = None, step_s: int = 900,
    t0: datetime = T0, rng: random.Random | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Records ``start_seq`` .. ``start_seq + n - 1`` of the meter. With neither ``register``
    nor ``rng`` given they are part of one stream per meter, starting at 1000 Wh at seq 1, so
    records of later seqs continue the register where the earlier ones left it (the hub refuses
    a span posted twice: hub.rating.register)."""
    if register is None and rng is None and start_seq > 1:
        return records_for(meter, start_seq - 1 + n, step_s=step_s, t0=t0)[start_seq - 1 :]
    register = 1000 if register is None else register
    rng = rng or random.Random(meter)
    out = []
    t = t0 + timedelta(seconds=step_s * (start_seq - 1))
    for seq in range(start_seq, start_seq + n):
        used = rng.randint(0, 700)
        out.append({"meter": meter, "seq": seq, "start": t.isoformat(),
                    "end": (t + timedelta(seconds=step_s)).isoformat(),
                    "import_start": register, "import_end": register + used})  # fmt: skip
        register += used
        t += timedelta(seconds=step_s)
    return out


def usage(records: Sequence[dict[str, Any]]) -> bytes:
    return json.dumps({"v": 1, "records": list(records)}).encode()


class Publisher:
    """A QoS 1 publisher that waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-pub") -> None:
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id
        )
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic_name, payload, qos=qos, retain=retain).wait_for_publish(10)

    def usage(self, gateway: str, records: Sequence[dict[str, Any]]) -> None:
        self.send(topic(gateway, "usage"), usage(records))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextmanager
def publisher(port: int, client_id: str = "test-pub") -> Iterator[Publisher]:
    pub = Publisher(port, client_id)
    try:
        yield pub
    finally:
        pub.close()


class Collector:
    """Subscribes to a topic filter and keeps every payload received."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def table(name: str) -> Any:
    return metadata.tables[name]


def count(engine: Engine, name: str) -> int:
    with read_tx(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())


def posted(engine: Engine) -> int:
    return count(engine, "posted_usage")


def quarantined(engine: Engine) -> list[tuple[str, str]]:
    q = table("quarantine")
    with read_tx(engine) as conn:
        rows = conn.execute(select(q.c.topic, q.c.reason).order_by(q.c.id))
        return [(r[0], r[1]) for r in rows]


def balances(engine: Engine) -> dict[str, int]:
    a = table("accounts")
    with read_tx(engine) as conn:
        return {r[0]: r[1] for r in conn.execute(select(a.c.id, a.c.balance))}


def entries(engine: Engine) -> int:
    return count(engine, "journal_entries")
