"""Fuzzed commands against the agent (issue 20, item 3).

Hypothesis drives the command gate (``agent/commands.py``, on a real SQLite store) with any
payload and with mutations of a signed command: each is accepted (only if still validly
signed) or refused with a one-line reason; nothing else escapes. Then 10,000 fuzzed payloads
(seed ``SMSA_FUZZ_SEED``) reach a running ``smsa-agent`` over a real broker on its cmd topic,
through its command handler (``agent/command_handler.py``): it keeps running, refuses and
counts every one (its status file's ``rejected``, also ``smsa_agent_rejected_total`` on its
metrics port), its relay is untouched, and a valid command sent after them is applied.

Reproduce the counts: ``.venv/bin/python -m pytest tests/fuzz/test_agent_commands.py -q
--log-cli-level=INFO``.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from hypothesis import HealthCheck, given, settings

from agent.commands import CommandGate
from agent.errors import CommandRejected
from protocol.errors import ProtocolError
from protocol.messages import load_json
from protocol.signing import new_key, signed, verify
from tests.agent.helpers import (
    Procs,
    agent_config,
    meter_status,
    meters,
    modbus_tcp,
    read_status,
    relay_register,
    tcp_bus,
    tcp_sim_args,
)
from tests.agent.helpers import command as signed_command
from tests.conftest import Broker
from tests.fuzz.payloads import NOW, any_payload, command_seed, corpus, mutated
from tests.support import free_port, wait_for

log = logging.getLogger(__name__)

N = int(os.environ.get("SMSA_FUZZ_PAYLOADS", "10000"))
SEED = int(os.environ.get("SMSA_FUZZ_SEED", "20"))
KEY = new_key()
SIGNED = signed(command_seed("m1"), KEY)
SEEDS = [SIGNED, signed(command_seed("m1", "credit"), KEY), command_seed("m1", "rotate")]
CMD = "smsa/v1/gw/gw-t/cmd"


def validly_signed(payload: bytes) -> bool:
    """Whether ``payload`` still carries a good signature (then it is valid input)."""
    try:
        data = load_json(payload)
    except ProtocolError:
        return False
    return isinstance(data, dict) and verify(data, KEY)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(payload=any_payload(SEEDS) | mutated(SIGNED))
def test_the_gate_accepts_or_refuses_in_one_line(tmp_path: Path, payload: bytes) -> None:
    gate = CommandGate(KEY, tmp_path / f"gate-{threading.get_ident()}.db")
    try:
        try:
            gate.accept(payload, NOW + timedelta(seconds=1))
        except CommandRejected as exc:
            assert exc.reason and "\n" not in exc.reason
        else:
            assert validly_signed(payload)
    finally:
        gate.close()


def fuzzed_commands(n: int, seed: int, key: str) -> list[bytes]:
    """``n`` mutations of commands signed with ``key`` that no longer carry its signature."""
    seeds = [signed(command_seed("m1"), key), signed(command_seed("m1", "credit"), key)]
    out: list[bytes] = []
    rounds = 0
    while len(out) < n:
        for _, payload in corpus(seed + rounds, n, seeds):
            try:
                data = load_json(payload)
            except ProtocolError:
                data = None
            if not (isinstance(data, dict) and verify(data, key)):
                out.append(payload)
                if len(out) == n:
                    break
        rounds += 1
    return out


def publish_all(port: int, payloads: list[bytes]) -> None:
    acked = threading.Semaphore(0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzz-hub")
    client.on_publish = lambda *_a: acked.release()
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            client.publish(CMD, payload, qos=1)
        for _ in payloads:
            assert acked.acquire(timeout=30), "the broker stopped acknowledging"
    finally:
        client.disconnect()
        client.loop_stop()


def rejected(status: Path) -> int:
    data = read_status(status) or {}
    return int(data.get("stats", {}).get("rejected", -1))


def test_a_running_agent_refuses_and_counts_fuzzed_commands(
    tmp_path: Path, mosquitto: Broker, procs: Procs
) -> None:
    port = free_port()
    procs.sim(tcp_sim_args(port, {1: 2000}, "--speed", "60"))
    key = new_key()
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters([1]), key=key)
    status = tmp_path / "status.json"
    agent = procs.agent(config)
    wait_for(lambda: meter_status(status, "m1").get("relay") == "on", timeout=20)
    wait_for(lambda: rejected(status) == 0, timeout=10)
    payloads = fuzzed_commands(N, SEED, key)
    publish_all(mosquitto.port, payloads)
    wait_for(lambda: rejected(status) >= N, timeout=60)
    assert agent.proc.poll() is None, "the agent died"
    assert rejected(status) == N
    with modbus_tcp(port) as client:
        assert relay_register(client, 1) == 1  # nothing switched the relay
        publish_all(mosquitto.port, [signed_command(key, "m1", "disconnect")])
        wait_for(lambda: meter_status(status, "m1").get("relay") == "off", timeout=20)
        assert relay_register(client, 1) == 0
    assert rejected(status) == N
    assert "handling command failed" not in agent.text(), agent.text()[-3000:]  # all reported
    log.info("agent fuzz: seed %d: %d fuzzed commands refused and counted; then a valid one "
             "applied", SEED, N)  # fmt: skip
