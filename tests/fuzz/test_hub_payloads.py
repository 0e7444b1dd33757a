"""10,000 fuzzed payloads on every topic the hub reads, against the running hub (issue 20,
item 3): the real IngestService and API (tests/hub/api/stack.py) on a real Mosquitto.

The payloads are mutations of valid usage, events and status messages of gateway gw1's meter
m1 (tests/fuzz/payloads.py, seed ``SMSA_FUZZ_SEED``, default 20), kept when the message schema
refuses them: invalid input. Afterwards the hub still runs (``/healthz``, and a valid record
sent after them is posted), the ledger is what it was, and every message is counted as received
and as quarantined in ``/metrics``. Then hypothesis's payloads (any bytes, any JSON, mutations
that may stay valid) go one by one to every topic: each is received, the hub still answers and
the ledger's invariants hold.

Reproduce the counts: ``.venv/bin/python -m pytest tests/fuzz/test_hub_payloads.py -q
--log-cli-level=INFO``
(``SMSA_FUZZ_PAYLOADS`` and ``SMSA_FUZZ_SEED`` to change them).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from hub.db import make_engine
from protocol.errors import ProtocolError
from protocol.messages import EventMessage, Status, UsageMessage, parse
from protocol.topics import topic
from tests.conftest import Broker
from tests.fuzz.payloads import any_payload, corpus, events_seed, status_seed, usage_seed
from tests.hub.api.helpers import ledger_state
from tests.hub.api.stack import Stack, running_hub
from tests.support import wait_for

log = logging.getLogger(__name__)

N = int(os.environ.get("SMSA_FUZZ_PAYLOADS", "10000"))
SEED = int(os.environ.get("SMSA_FUZZ_SEED", "20"))
KINDS: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
    ("usage", UsageMessage, usage_seed("m1")),
    ("events", EventMessage, events_seed("m1")),
    ("status", Status, status_seed()),
]


def invalid(payload: bytes, model: type[BaseModel]) -> bool:
    try:
        parse(payload, model)
    except ProtocolError:
        return True
    return False


def fuzzed(n: int, seed: int) -> list[tuple[str, bytes]]:
    """``n`` (kind, payload) pairs the message schema refuses."""
    out: list[tuple[str, bytes]] = []
    rounds = 0
    while len(out) < n:
        for which, payload in corpus(seed + rounds, n, [k[2] for k in KINDS]):
            kind, model, _ = KINDS[which]
            if invalid(payload, model):
                out.append((kind, payload))
                if len(out) == n:
                    break
        rounds += 1
    return out


def metric(stack: Stack, name: str) -> float:
    text = stack.http.get("/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


@pytest.fixture
def stack(tmp_path: Path, mosquitto: Broker) -> Iterator[Stack]:
    with running_hub(tmp_path, mosquitto) as running:
        yield running


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Every message at QoS 1 on gw1's topics, returning once the broker acknowledged all."""
    acked = threading.Semaphore(0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-gw1")
    client.on_publish = lambda *_a: acked.release()
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for kind, payload in messages:
            client.publish(topic("gw1", kind), payload, qos=1)
        for _ in messages:
            assert acked.acquire(timeout=30), "the broker stopped acknowledging"
    finally:
        client.disconnect()
        client.loop_stop()


def test_fuzzed_payloads_are_quarantined_counted_and_move_no_money(
    stack: Stack, tmp_path: Path, mosquitto: Broker
) -> None:
    r = stack.http.post("/api/v1/accounts/c1/topups", json={"amount": "20.00", "reference": "f"},
                        headers={**stack.keys.h("admin"), "Idempotency-Key": "fuzz"})  # fmt: skip
    assert r.status_code == 201
    engine = make_engine(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        before = ledger_state(engine)
        received = stack.ingest.counters["received"]
        quarantined = stack.ingest.counters["quarantined"]
        messages = fuzzed(N, SEED)
        publish_all(mosquitto.port, messages)
        wait_for(lambda: stack.ingest.counters["quarantined"] >= quarantined + N, timeout=60)
        assert stack.ingest.counters["received"] == received + N
        assert stack.ingest.counters["quarantined"] == quarantined + N
        assert ledger_state(engine) == before
        assert metric(stack, "smsa_ingest_quarantined_total") == quarantined + N
        assert metric(stack, "smsa_records_quarantined") == quarantined + N
        assert stack.http.get("/healthz").json() == {"ok": True, "db": True, "mqtt": True}
        assert stack.http.get("/api/v1/ledger/check", headers=stack.keys.h("admin")).json()["ok"]

        # the hub still settles: a valid record after the fuzz is posted
        publish_all(mosquitto.port, [("usage", usage_payload())])
        wait_for(lambda: stack.ingest.counters["posted"] >= 1, timeout=20)
        assert ledger_state(engine) != before
        hypothesis_payloads(stack, mosquitto)
        log.info("hub fuzz: seed %d: %d payloads %s, %d quarantined, ledger unchanged by them",
                 SEED, N, dict(Counter(kind for kind, _ in messages)), N)  # fmt: skip
    finally:
        engine.dispose()


def hypothesis_payloads(stack: Stack, mosquitto: Broker) -> None:
    """Hypothesis's payloads (any bytes, any JSON, mutations that may stay valid) one at a time
    on every topic the hub reads: each is received and the hub still answers; the ledger's
    invariants hold after them (a payload that stayed valid may post)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-hyp")
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    seeds = [k[2] for k in KINDS]
    try:

        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(kind=st.sampled_from([k[0] for k in KINDS]), payload=any_payload(seeds))
        def run(kind: str, payload: bytes) -> None:
            received = stack.ingest.counters["received"]
            client.publish(topic("gw1", kind), payload, qos=1).wait_for_publish(10)
            wait_for(lambda: stack.ingest.counters["received"] > received, timeout=10)

        run()
    finally:
        client.disconnect()
        client.loop_stop()
    assert stack.http.get("/healthz").json()["ok"]
    assert stack.http.get("/api/v1/ledger/check", headers=stack.keys.h("admin")).json()["ok"]


def usage_payload() -> bytes:
    return json.dumps(usage_seed("m1")).encode()
