"""The hub's MQTT client in a process of its own:
``python -m hub.ingest.transport.pump --fd N CONFIG``.

Receiving and acknowledging QoS 1 messages costs a paho client a good part of what settling one
record costs; in one process both share the GIL and the hub can use one core at most. This
process owns the MQTT client (``hub.ingest.transport.paho_bulk``) and nothing else: it forwards
what it receives to the parent over a socket (``multiprocessing.connection.Connection``, in
chunks), acknowledges what the parent says is committed, and publishes what the parent asks it
to.

Messages are forwarded already split by settler (``shard_of``) and pickled as the settler's
``Delivery``, so the parent passes them on as bytes without unpickling them.

Child → parent (``hub.ingest.transport.messages``): ``Routed`` (one ``Part`` per settler),
``Up`` once subscribed, ``Down``, ``Protocol`` after falling back to MQTT 3.1.1, ``PubAck``,
``Cpu`` when stopping. Parent → child: ``Ack`` (QoS 1 messages: the subscriptions are QoS 1, so
none arrive at QoS 2), ``Publish`` (QoS 1; with a token, the broker's PUBACK is reported as
``PubAck``), ``PublishAll`` (several, QoS 1, no PUBACK reported), ``Stop``.

A generation names one connection: a message received on an earlier connection is never
acknowledged on a later one (its mid may name another message there); the broker redelivers it.
When the parent goes away (even by kill -9) the socket reads end-of-file and this process
disconnects and exits, so a restarted hub never fights an orphan for its session.
"""

from __future__ import annotations

import json
import logging
import pickle
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import paho.mqtt.client as mqtt

from hub.ingest.transport.child import exit_child, log_to_stderr, serve_parent, start_child
from hub.ingest.transport.messages import (
    Ack,
    Chunk,
    Cpu,
    Delivery,
    Down,
    FromPump,
    Part,
    Protocol,
    PubAck,
    Publish,
    PublishAll,
    Routed,
    ToPump,
    Up,
)
from hub.ingest.transport.mqtt import BrokerUrl, connect_properties, make_client
from hub.ingest.transport.paho_bulk import BulkClient
from hub.ingest.transport.pump_link import PumpConfig
from hub.ingest.transport.settler_link import shard_of
from protocol import topics

log = logging.getLogger(__name__)

# How long an MQTT 5 CONNECT may go unanswered on an open connection before MQTT 3.1.1 is tried.
CONNACK_WAIT_S = 5.0
KINDS = ("usage", "events", "status")
FORWARD_WAIT_S = 0.005  # longest a received message waits before it is forwarded
CHUNK_MAX = 2_000  # messages per forwarded chunk


def subscriptions(share: str | None) -> list[tuple[str, int]]:
    """The QoS 1 subscriptions: every gateway's usage, events and status; with ``share``, as
    the MQTT 5 shared subscription ``$share/SHARE/...`` (each message to one member)."""
    prefix = f"$share/{share}/" if share else ""
    return [(prefix + topics.subscription(kind), 1) for kind in KINDS]


class Pump:
    """The paho client, its callbacks, and the two directions of the parent connection."""

    def __init__(self, cfg: PumpConfig, conn: Connection) -> None:
        self.cfg = cfg
        self.url = BrokerUrl.parse(cfg.url)
        self.conn = conn
        self.v5 = cfg.v5
        self.generation = cfg.generation_base
        self._client: BulkClient | None = None
        self._client_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._inbox: Chunk = []
        self._inbox_lock = threading.Lock()
        self._arrived = threading.Event()
        self._stopping = threading.Event()
        self._connected = False
        self._refused_v5 = False
        self._spoke_v5 = False  # a broker once accepted MQTT 5: never fall back from it
        self._attempt_at = time.monotonic()
        self._session_present = False
        # mid -> token of our QoS 1 publishes awaiting PUBACK; mids acknowledged before
        # ``publish()`` returned (the network thread can be that quick)
        self._tracked: dict[int, str | None] = {}
        self._early: set[int] = set()
        self._tracked_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    def run(self) -> None:
        """Connect, forward in a thread, and serve the parent's requests until told to stop or
        the parent is gone."""
        self._open()
        forwarder = threading.Thread(target=self._forward_loop, name="pump-forward", daemon=True)
        forwarder.start()
        try:
            serve_parent(self.conn, self._request)
        finally:
            self._stopping.set()
            self._arrived.set()
            forwarder.join(5)
            self._close()
            self._send(Cpu(time.process_time()))

    def _request(self, request: ToPump) -> bool:
        match request:
            case Ack(generation, mids):
                self._ack(generation, mids)
            case Publish(topic, payload, token):
                self._publish(topic, payload, token)
            case PublishAll(items):
                for topic, payload in items:
                    self._publish(topic, payload, None)
        return True

    def _publish(
        self, topic: str, payload: bytes, token: str | None, *, retain: bool = False
    ) -> None:
        with self._client_lock:
            client = self._client
        if client is None:
            return
        mid = client.publish(topic, payload, qos=1, retain=retain).mid
        with self._tracked_lock:  # never held while calling paho (it calls on_publish locked)
            if mid in self._early:
                self._early.discard(mid)
                early = True
            else:
                self._tracked[mid] = token
                early = False
        if early and token is not None:
            self._send(PubAck(token))

    def _open(self) -> None:
        client = make_client(self.url, self.cfg.client_id, v5=self.v5, ca_file=self.cfg.ca_file)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_publish_received = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_puback
        client.will_set(topics.HUB_STATUS, _hub_status("offline"), qos=1, retain=True)
        self._attempt_at = time.monotonic()
        if self.v5:
            props = connect_properties(self.cfg.session_expiry_s, self.cfg.receive_maximum)
            client.connect_async(self.url.host, self.url.port, keepalive=60, clean_start=False,
                                 properties=props)  # fmt: skip
        else:
            client.connect_async(self.url.host, self.url.port, keepalive=60)
        with self._client_lock:
            self._client = client
        client.loop_start()
        log.info("ingest: connecting to %s:%d as %s", self.url.host, self.url.port,
                 self.cfg.client_id)  # fmt: skip

    def _close(self) -> None:
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def _fall_back_to_311(self) -> None:
        """Reopen the session with MQTT 3.1.1 (the broker refused or ignored MQTT 5)."""
        self._refused_v5 = False
        self._close()
        self.v5 = False
        log.warning("ingest: the broker refuses MQTT 5; using MQTT 3.1.1 (batches of at most "
                    "the broker's in-flight limit)")  # fmt: skip
        self._send(Protocol(v5=False))
        self._open()

    def _silent_on_v5(self) -> bool:
        """An MQTT 3.1.1-only broker (amqtt) may swallow an MQTT 5 CONNECT without a CONNACK."""
        waited = time.monotonic() - self._attempt_at
        return self.v5 and not self._spoke_v5 and not self._connected and waited > CONNACK_WAIT_S

    # -- to the parent -------------------------------------------------------------------------

    def _send(self, message: FromPump) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except (OSError, ValueError):
            self._stopping.set()  # the parent is gone; serve_parent sees the end-of-file

    def _forward_loop(self) -> None:
        while not self._stopping.is_set():
            self._arrived.wait(0.1)
            if self._refused_v5 or self._silent_on_v5():
                self._fall_back_to_311()
            if not self._arrived.is_set():
                continue
            time.sleep(FORWARD_WAIT_S)  # let a burst gather into one chunk
            self._arrived.clear()
            with self._inbox_lock:
                inbox, self._inbox = self._inbox, []
            for i in range(0, len(inbox), CHUNK_MAX):
                self._send(Routed(self._by_shard(inbox[i : i + CHUNK_MAX])))

    def _by_shard(self, chunk: Chunk) -> list[Part]:
        """``chunk`` split by settler, each part pickled as that settler's ``Delivery``."""
        shards = self.cfg.shards
        parts: dict[int, Chunk] = {}
        for item in chunk:
            shard = shard_of(item[0], shards)
            part = parts.get(shard)
            if part is None:
                part = parts[shard] = []
            part.append(item)
        return [Part(shard, len(part), pickle.dumps(Delivery(part), pickle.HIGHEST_PROTOCOL))
                for shard, part in parts.items()]  # fmt: skip

    def _ack(self, generation: int, mids: list[int]) -> None:
        with self._client_lock:
            client = self._client
            if client is None or generation != self.generation:
                return  # an earlier connection's messages: the broker delivers them again
            client.ack_many(mids)

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            if self.v5 and str(reason) == "Unsupported protocol version":
                self._refused_v5 = True  # the forwarder reopens with MQTT 3.1.1
                self._arrived.set()
                return
            log.error("ingest: broker refused the connection: %s", reason)
            return
        self._spoke_v5 = self.v5
        self.generation += 1
        self._session_present = bool(flags.session_present)
        client.subscribe(subscriptions(self.cfg.share))
        log.info("ingest: connected (session present: %s)", flags.session_present)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._attempt_at = time.monotonic()  # no TCP connection: the broker is down, not silent

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, codes: Any, _props: Any
    ) -> None:
        if any(code.is_failure for code in codes):
            log.error("ingest: subscription refused: %s", codes)
            return
        self._connected = True
        # subscribed: gateways send again what no hub has confirmed (nobody may have been here)
        self._publish(topics.HUB_STATUS, _hub_status("online"), None, retain=True)
        self._send(Up(self.generation, self._session_present))

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected = False
        self._send(Down(str(reason)))
        if not self._stopping.is_set():
            log.warning("ingest: disconnected from the broker (%s); reconnecting", reason)

    def _on_puback(
        self, _client: mqtt.Client, _userdata: Any, mid: int, reason: Any, _props: Any
    ) -> None:
        with self._tracked_lock:
            if mid in self._tracked:
                token = self._tracked.pop(mid)
            else:
                self._early.add(mid)
                token = None
        if token is not None and not getattr(reason, "is_failure", False):
            self._send(PubAck(token))  # a refusal leaves it queued: it is tried again

    def _on_publish(self, topic: str, payload: bytes, mid: int, qos: int) -> None:
        # The generation is read here, in the thread that also counts connections, so a
        # message is always tagged with the connection it came on.
        item = (topic, payload, time.time(), mid, qos, self.generation)
        with self._inbox_lock:
            self._inbox.append(item)
        if not self._arrived.is_set():  # the forwarder clears it before taking the inbox
            self._arrived.set()


def _hub_status(state: str) -> bytes:
    return json.dumps({"v": 1, "state": state, "at": time.time()}).encode()


def main(argv: list[str] | None = None) -> int:
    text, conn = start_child("python -m hub.ingest.transport.pump", argv)
    cfg = PumpConfig.from_json(text)
    log_to_stderr(cfg.log_level)
    Pump(cfg, conn).run()
    return 0


if __name__ == "__main__":
    exit_child(main())
