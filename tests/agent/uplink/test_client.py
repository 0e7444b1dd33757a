"""The MQTT uplink against a real Mosquitto: ordering, exactly-once after dedupe, Last Will."""

import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.uplink.client import Uplink, UplinkError, parse_url
from agent.uplink.outbox import Outbox
from tests.agent.uplink.helpers import KEY, Broker, Subscriber, deduplicated, event, record
from tests.support import free_port, port_open, stop, wait_for
from tests.tlscerts import make_certificates

ROOT = Path(__file__).resolve().parents[3]
METERS = ("m1", "m2", "m3")


class Received:
    def __init__(self) -> None:
        self.commands: list[bytes] = []
        self.lock = threading.Lock()

    def __call__(self, payload: bytes) -> None:
        with self.lock:
            self.commands.append(payload)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "agent.db", max_rows=100_000)
    yield box
    box.close()


def make_uplink(broker: Broker, outbox: Outbox, received: Received, **kw: int) -> Uplink:
    return Uplink(
        "gw-1",
        broker.url,
        None,
        None,
        outbox,
        received,
        lambda: {"meters": len(METERS)},
        command_key=KEY,
        reconnect_delay=(1, 2),
        **kw,  # type: ignore[arg-type]
    )


def statuses(sub: Subscriber) -> list[str]:
    return [p["state"] for p in sub.payloads("status")]


def test_broker_down_at_start_then_everything_arrives_once_in_order(
    broker: Broker, subscriber: Subscriber, outbox: Outbox
) -> None:
    broker.stop()
    received = Received()
    uplink = make_uplink(broker, outbox, received, batch_rows=25)
    uplink.start()
    try:
        for seq in range(1, 101):
            for meter in METERS:
                outbox.add_usage(record(meter, seq))
            if seq % 10 == 0:
                outbox.add_event(event(seq))
        assert not uplink.connected
        assert outbox.depth() == 310
        broker.restart()
        wait_for(lambda: outbox.depth() == 0, timeout=30)
        wait_for(lambda: len(subscriber.records()) >= 300, timeout=10)
        wait_for(lambda: len(subscriber.events()) >= 10, timeout=10)
        records = subscriber.records()
        assert len(records) == 300, "a record arrived twice without any disconnect"
        per_meter = deduplicated(records)
        for meter in METERS:
            assert [r["seq"] for r in per_meter[meter]] == list(range(1, 101))
            stamped = record(meter, 1).model_copy(update={"epoch": outbox.epoch})
            assert per_meter[meter][0] == json.loads(stamped.model_dump_json(exclude_none=True))
        assert [e["id"] for e in subscriber.events()] == [f"ev-{n}" for n in range(10, 101, 10)]
        wait_for(lambda: "online" in statuses(subscriber), timeout=10)
        online = subscriber.payloads("status")[-1]
        assert online["v"] == 1 and online["meters"] == 3 and "outbox_depth" in online

        # a command published to the gateway's cmd topic reaches on_command
        subscriber.client.publish("smsa/v1/gw/gw-1/cmd", b'{"hello": 1}', qos=1)
        wait_for(lambda: received.commands == [b'{"hello": 1}'], timeout=10)
    finally:
        uplink.stop()
    wait_for(lambda: statuses(subscriber)[-1:] == ["offline"], timeout=10)
    assert not uplink.connected


def test_broker_restart_mid_stream_loses_nothing(
    broker: Broker, subscriber: Subscriber, outbox: Outbox
) -> None:
    total = 1500
    for seq in range(1, total + 1):
        outbox.add_usage(record(METERS[seq % 3], seq))
    uplink = make_uplink(broker, outbox, Received(), batch_rows=5, window=4)
    uplink.start()
    try:
        wait_for(lambda: outbox.depth() < total - 200, timeout=30)
        broker.restart()
        wait_for(lambda: outbox.depth() == 0, timeout=60)
        wait_for(lambda: len({(r["meter"], r["seq"]) for r in subscriber.records()}) == total, 20)
    finally:
        uplink.stop()
    per_meter = deduplicated(subscriber.records())
    for n, meter in enumerate(METERS):
        expected = [s for s in range(1, total + 1) if s % 3 == n]
        assert [r["seq"] for r in per_meter[meter]] == expected


def test_last_will_reports_offline_when_the_agent_is_killed(
    broker: Broker, subscriber: Subscriber, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("uplink_runner.py")),
            str(tmp_path / "child.db"),
            broker.url,
            "gw-9",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "connected"
        wait_for(lambda: statuses(subscriber)[-1:] == ["online"], timeout=10)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        wait_for(lambda: statuses(subscriber)[-1:] == ["offline"], timeout=10)
        topic, _, _ = subscriber.messages[-1]
        assert topic == "smsa/v1/gw/gw-9/status"
    finally:
        proc.kill()
        proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
    # retained: a newcomer learns the gateway is offline
    late = Subscriber(broker, client_id="late")
    try:
        wait_for(lambda: late.payloads("status"), timeout=10)
        assert late.payloads("status")[-1]["state"] == "offline"
        assert late.messages[-1][2] is True
    finally:
        late.close()


def test_urls() -> None:
    assert parse_url("mqtt://h").port == 1883
    tls = parse_url("mqtts://u:p%40ss@broker.example:8884")
    assert (tls.host, tls.port, tls.tls, tls.username, tls.password) == (
        "broker.example",
        8884,
        True,
        "u",
        "p@ss",
    )
    for bad in ("http://h", "mqtt://", "mqtt://h:99999", "mqtt://h/x"):
        with pytest.raises(UplinkError):
            parse_url(bad)
    with pytest.raises(UplinkError, match=r"\*\*\*@h"):
        parse_url("ftp://user:secret@h")


@pytest.fixture
def mqtt311_broker(tmp_path: Path) -> Iterator[str]:
    """A real MQTT 3.1.1-only broker (amqtt), which drops an MQTT 5 CONNECT without a CONNACK."""
    port = free_port()
    conf = tmp_path / "amqtt.yaml"
    conf.write_text(
        "listeners:\n"
        "  default:\n"
        "    type: tcp\n"
        f"    bind: 127.0.0.1:{port}\n"
        "plugins:\n"
        "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
        "    allow_anonymous: true\n"
    )
    exe = Path(sys.executable).with_name("amqtt")
    proc = subprocess.Popen(
        [str(exe), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, "amqtt did not start"
        yield f"mqtt://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_falls_back_to_mqtt_311_when_the_broker_ignores_mqtt_5(
    mqtt311_broker: str, outbox: Outbox
) -> None:
    port = int(mqtt311_broker.rsplit(":", 1)[1])
    receipter = Subscriber(Broker("127.0.0.1", port, Path()), receipt_key=KEY, v5=False)
    uplink = Uplink(
        "gw-1",
        mqtt311_broker,
        None,
        None,
        outbox,
        Received(),
        command_key=KEY,
        reconnect_delay=(1, 2),
        connack_wait_s=1.5,
    )
    for seq in range(1, 6):
        outbox.add_usage(record("m1", seq))
    uplink.start()
    try:
        wait_for(lambda: uplink.connected and outbox.depth() == 0, timeout=30)
    finally:
        uplink.stop()
        receipter.close()


def test_tls_with_a_private_ca(tmp_path: Path, outbox: Outbox) -> None:
    ca = make_certificates(tmp_path)
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    broker = Broker(
        "127.0.0.1",
        free_port(),
        tmp_path,
        extra=f"certfile {cert}\nkeyfile {key}\n",
        scheme="mqtts",
    )
    broker.start()
    uplink = Uplink(
        "gw-1", broker.url, None, None, outbox, Received(), command_key=KEY, tls_ca=str(ca.path),
        reconnect_delay=(1, 2),
    )  # fmt: skip
    try:
        outbox.add_usage(record("m1", 1))
        uplink.start()
        wait_for(lambda: uplink.connected and uplink.broker_acks == 1, timeout=20)
        assert outbox.depth() == 1, "the broker's PUBACK alone must not delete the record"
    finally:
        uplink.stop()
        broker.stop()
