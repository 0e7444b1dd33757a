"""The pump's MQTT client (hub.ingest.paho_bulk) against a real Mosquitto: reads ahead through
its buffer, and one ``ack_many`` acknowledges a whole batch (none redelivered), while
unacknowledged messages come back on the next connection."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest

from hub.ingest.mqtt import BrokerUrl, connect_properties, make_client
from hub.ingest.paho_bulk import BulkClient, pubacks
from tests.conftest import Broker
from tests.support import wait_for

TOPIC = "smsa/v1/gw/gw-1/usage"
N = 3_000  # more than one read-ahead buffer's worth


def test_pubacks_are_mqtt_puback_packets() -> None:
    assert pubacks([1, 258, 65535]) == bytes([0x40, 2, 0, 1, 0x40, 2, 1, 2, 0x40, 2, 0xFF, 0xFF])
    assert pubacks([]) == b""


class Receiver:
    """A ``BulkClient`` on a persistent MQTT 5 session, collecting what it receives."""

    def __init__(self, broker: Broker) -> None:
        self.mids: list[int] = []
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self.subacks = 0
        self.client: BulkClient = make_client(BrokerUrl.parse(broker.url), "bulk-test")
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = lambda c, *_args: c.subscribe(TOPIC, qos=1)
        self.client.connect("127.0.0.1", broker.port, clean_start=False,
                            properties=connect_properties(3600, 65_535))  # fmt: skip
        self.client.loop_start()
        wait_for(lambda: self.subacks == 1, timeout=10)

    def _on_subscribe(self, *_args: object) -> None:
        with self._lock:
            self.subacks += 1

    def fence(self) -> None:
        """Return once the broker has handled every packet sent so far (it answers a
        connection's packets in order: a SUBACK comes after it took the PUBACKs before it)."""
        before = self.subacks
        self.client.subscribe("smsa/v1/test/fence", qos=1)
        wait_for(lambda: self.subacks > before, timeout=10)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.mids.append(msg.mid)
            self.payloads.append(bytes(msg.payload))

    def received(self) -> int:
        with self._lock:
            return len(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(broker: Broker, payloads: list[bytes]) -> None:
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                      client_id="bulk-test-pub")  # fmt: skip
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        infos = [pub.publish(TOPIC, payload, qos=1) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.parametrize("acknowledge", [True, False])
def test_ack_many_acknowledges_a_batch_and_unacked_ones_come_back(
    mosquitto: Broker, acknowledge: bool
) -> None:
    first = Receiver(mosquitto)
    try:
        assert first.client.read_ahead()
        sent = [b"m%05d" % i + b"x" * 200 for i in range(N)]
        _publish(mosquitto, sent)
        wait_for(lambda: first.received() == N, timeout=30)
        assert first.payloads == sent
        if acknowledge:
            first.client.ack_many(first.mids)
        first.fence()
    finally:
        first.close()

    second = Receiver(mosquitto)  # the same session
    try:
        _publish(mosquitto, [b"marker"])  # everything redelivered arrives before it
        wait_for(lambda: second.received() >= 1 and second.payloads[-1] == b"marker", timeout=30)
        redelivered = second.received() - 1
        assert redelivered == (0 if acknowledge else N)
    finally:
        second.close()
