"""The pump's MQTT client (hub.ingest.transport.paho_bulk) against a real Mosquitto: it reads
ahead through its buffer, hands every message over intact (through its own PUBLISH fast path,
MQTT 5 and 3.1.1, or paho's), and one ``ack_many`` acknowledges a whole batch (none redelivered),
while unacknowledged messages come back on the next connection; without ``manual_ack`` the fast
path acknowledges each message itself. These pin the paho internals the client overrides
(``tests/test_pins.py`` pins paho's version)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.ingest.transport.mqtt import BrokerUrl, connect_properties, make_client
from hub.ingest.transport.paho_bulk import BulkClient, pubacks
from tests.conftest import Broker
from tests.support import wait_for

TOPIC = "smsa/v1/gw/gw-1/usage"
N = 3_000  # more than one read-ahead buffer's worth
N_311 = 15  # MQTT 3.1.1: below Mosquitto's default in-flight limit (20), all arrive unacked


def test_pubacks_are_mqtt_puback_packets() -> None:
    assert pubacks([1, 258, 65535]) == bytes([0x40, 2, 0, 1, 0x40, 2, 1, 2, 0x40, 2, 0xFF, 0xFF])
    assert pubacks([]) == b""


class Receiver:
    """A ``BulkClient`` on a persistent session, collecting what it receives (through
    ``on_publish_received`` when ``fast``, else paho's ``on_message``)."""

    def __init__(self, broker: Broker, *, fast: bool, v5: bool, manual_ack: bool = True) -> None:
        self.mids: list[int] = []
        self.payloads: list[bytes] = []
        self._lock = threading.Lock()
        self.subacks = 0
        self.client: BulkClient = make_client(
            BrokerUrl.parse(broker.url), "bulk-test", v5=v5, manual_ack=manual_ack
        )
        if fast:
            self.client.on_publish_received = self._on_publish
        else:
            self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_connect = lambda c, *_args: c.subscribe(TOPIC, qos=1)
        if v5:
            self.client.connect("127.0.0.1", broker.port, clean_start=False,
                                properties=connect_properties(3600, 65_535))  # fmt: skip
        else:
            self.client.connect("127.0.0.1", broker.port)
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
        self._on_publish(msg.topic, bytes(msg.payload), msg.mid, msg.qos)

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        assert (topic, qos) == (TOPIC, 1)
        with self._lock:
            self.mids.append(mid)
            self.payloads.append(payload)

    def received(self) -> int:
        with self._lock:
            return len(self.payloads)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _publish(broker: Broker, payloads: list[bytes]) -> None:
    """Publish at QoS 1 over MQTT 5 with properties, which Mosquitto passes on to MQTT 5
    subscribers (the fast path must skip them)."""
    pub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                      client_id="bulk-test-pub", protocol=mqtt.MQTTv5)  # fmt: skip
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("gateway", "gw-1"), ("long", "x" * 300)]
    props.ContentType = "application/json"
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        infos = [pub.publish(TOPIC, payload, qos=1, properties=props) for payload in payloads]
        for info in infos:
            info.wait_for_publish(10)
    finally:
        pub.disconnect()
        pub.loop_stop()


@pytest.mark.parametrize("acknowledge", [True, False])
@pytest.mark.parametrize(("fast", "v5"), [(True, True), (False, True), (True, False)])
def test_ack_many_acknowledges_a_batch_and_unacked_ones_come_back(
    mosquitto: Broker, acknowledge: bool, fast: bool, v5: bool
) -> None:
    n = N if v5 else N_311
    first = Receiver(mosquitto, fast=fast, v5=v5)
    try:
        assert first.client.read_ahead()
        sent = [b"m%05d" % i + b"x" * 200 for i in range(n)]
        _publish(mosquitto, sent)
        wait_for(lambda: first.received() == n, timeout=30)
        assert first.payloads == sent
        if acknowledge:
            first.client.ack_many(first.mids)
        first.fence()
    finally:
        first.close()

    assert _redelivered(mosquitto, fast=fast, v5=v5) == (0 if acknowledge else n)


def test_without_manual_ack_the_fast_path_acknowledges_each_message(mosquitto: Broker) -> None:
    first = Receiver(mosquitto, fast=True, v5=True, manual_ack=False)
    try:
        sent = [b"a%05d" % i for i in range(N)]
        _publish(mosquitto, sent)
        wait_for(lambda: first.received() == N, timeout=30)
        assert first.payloads == sent
        first.fence()
    finally:
        first.close()
    assert _redelivered(mosquitto, fast=True, v5=True) == 0


def _redelivered(broker: Broker, *, fast: bool, v5: bool) -> int:
    """How many messages the session's next connection gets again."""
    second = Receiver(broker, fast=fast, v5=v5)  # the same session
    try:
        _publish(broker, [b"marker"])  # everything redelivered arrives before it
        wait_for(lambda: second.received() >= 1 and second.payloads[-1] == b"marker", timeout=30)
        return second.received() - 1
    finally:
        second.close()
