"""The MQTT uplink: drains the outbox in order, reports status, receives signed commands and
the hub's signed receipts.

Threads: paho's network thread (``loop_start``) runs the callbacks, which only enqueue; one
worker thread owns everything else (reading the outbox, publishing batches, deleting the rows a
verified receipt confirms, calling ``on_command``). Rows are published in outbox order; at most
``window`` messages wait for the broker's PUBACK at once, which only frees the window: a row
stays in the outbox until the hub's receipt (``protocol.receipts``). Sent rows still
unconfirmed are published again, oldest first: after every (re)connect, since a broker that lost
its sessions may have dropped what it acknowledged; whenever the hub announces itself online on
``smsa/v1/hub/status`` (nobody may have been subscribed while it was away); and past their
resend time, with back-off. The hub deduplicates by (meter, seq) and receipts duplicates.
See ``agent/uplink/README.md`` for topics, payloads and the durability argument.
"""

import json
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.credentials import Credentials
from agent.errors import AgentError
from agent.uplink.outbox import Outbox
from protocol import topics
from protocol.errors import ProtocolError
from protocol.messages import MAX_PAYLOAD
from protocol.receipts import verify_receipt

log = logging.getLogger(__name__)

BATCH_ROWS = 200
WINDOW = 8
SESSION_EXPIRY_S = 86_400
KEEPALIVE_S = 30
CONNACK_WAIT_S = 10.0
SILENT_REFUSALS = 3
_UNSUPPORTED_PROTOCOL = (1, 0x84)  # MQTT 3.1.1 return code, MQTT 5 reason code


class UplinkError(AgentError):
    """The uplink cannot be set up (bad URL); ``url`` names it without credentials."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(f"mqtt url {url}: {detail}")


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def parse_url(url: str) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` or ``mqtts://…`` (TLS, port 8883 by default)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UplinkError(_redact(url), str(exc)) from exc
    if parts.scheme not in ("mqtt", "mqtts"):
        raise UplinkError(_redact(url), "scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise UplinkError(_redact(url), "no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UplinkError(_redact(url), "only scheme, credentials, host and port are allowed")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _redact(url: str) -> str:
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"


class Uplink:
    """One MQTT client for the gateway (see the module docstring)."""

    def __init__(  # noqa: PLR0917 (the agreed positional interface)
        self,
        gateway_id: str,
        url: str,
        username: str | None,
        password: str | None,
        outbox: Outbox,
        on_command: Callable[[bytes], None],
        status_extra: Callable[[], dict[str, Any]] | None = None,
        *,
        command_key: str,
        reconnect_delay: tuple[int, int] = (1, 60),
        window: int = WINDOW,
        batch_rows: int = BATCH_ROWS,
        tls_ca: str | None = None,
        connack_wait_s: float = CONNACK_WAIT_S,
        keepalive_s: int = KEEPALIVE_S,
        credentials: Credentials | None = None,
    ) -> None:
        if not topics.valid_gateway_id(gateway_id):
            raise UplinkError(_redact(url), f"gateway id {gateway_id!r} is not usable in a topic")
        address = parse_url(url)
        self.gateway_id = gateway_id
        self._address = BrokerAddress(
            address.host,
            address.port,
            address.tls,
            username if username is not None else address.username,
            password if password is not None else address.password,
        )
        self._outbox = outbox
        self._command_key = command_key
        # rotated by the hub (agent.credentials): receipt keys, the password of the next connect
        self._credentials = credentials
        self._on_command = on_command
        self._status_extra = status_extra
        self._reconnect_delay = reconnect_delay
        self._window = max(1, window)
        self._batch_rows = max(1, batch_rows)
        self._tls_ca = tls_ca
        self._connack_wait_s = connack_wait_s
        self._keepalive_s = keepalive_s
        self._attempt_at: float | None = None
        self._silent_refusals = 0
        self._topic_status = topics.topic(gateway_id, "status")
        self._topic_usage = topics.topic(gateway_id, "usage")
        self._topic_events = topics.topic(gateway_id, "events")
        self._topic_cmd = topics.topic(gateway_id, "cmd")
        self._topic_receipt = topics.topic(gateway_id, "receipt")
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._connected = threading.Event()
        self._inflight: dict[int, list[int]] = {}
        self._cursor = 0
        self._retry_at = 0.0
        self._retry_delay = 1.0
        self._worker: threading.Thread | None = None
        self._protocol = MQTTProtocolVersion.MQTTv5
        self._client = self._new_client()
        self.published_batches = 0
        self.resent_batches = 0
        self.broker_acks = 0
        self.hub_online = 0
        self.confirmed_rows = 0
        self.receipts = 0
        self.refused_receipts = 0
        outbox.add_listener(self._wake.set)

    # -- public -------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background (retrying with back-off) and start draining the outbox."""
        if self._worker is not None:
            raise RuntimeError("uplink already started")
        self._cursor = self._outbox.last_sent_id()  # sent before a restart: resent as due
        self._connect(self._client)
        self._worker = threading.Thread(target=self._run, name="uplink", daemon=True)
        self._worker.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish the offline status, disconnect cleanly and join the threads."""
        self._stopping.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None
        client = self._client
        if self._connected.is_set():
            info = client.publish(
                self._topic_status, self._status_payload("offline"), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=min(2.0, timeout))
            except (RuntimeError, ValueError) as exc:
                log.warning("offline status not confirmed: %s", exc)
        client.disconnect()
        client.loop_stop()
        self._connected.clear()

    def publish_status(self) -> None:
        """Ask the worker to publish a fresh retained online status (with ``status_extra``)."""
        self._inbox.put(("status", None))
        self._wake.set()

    # -- paho callbacks (network thread: enqueue only) ----------------------------------------

    def _password(self) -> str | None:
        rotated = self._credentials.mqtt_password if self._credentials is not None else None
        return rotated or self._address.password

    def _on_pre_connect(self, client: mqtt.Client, userdata: Any) -> None:
        if self._address.username is not None:  # a rotated password counts from the next connect
            client.username_pw_set(self._address.username, self._password())
        if self._attempt_at is not None:  # the previous attempt reached the broker, no CONNACK
            self._silent_refusals += 1
        self._attempt_at = time.monotonic()

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._attempt_at = None  # the broker was not reachable at all: not a protocol problem

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._attempt_at = None
        self._silent_refusals = 0
        if reason.is_failure:
            self._inbox.put(("refused", reason.value))
        else:
            client.subscribe(
                [(self._topic_cmd, 1), (self._topic_receipt, 1), (topics.HUB_STATUS, 1)]
            )
            self._connected.set()
            self._inbox.put(("connected", flags.session_present))
        self._wake.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self._inbox.put(("disconnected", str(reason)))
            self._wake.set()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._inbox.put(("ack", (mid, reason.is_failure, str(reason))))
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if message.topic == self._topic_cmd:
            self._inbox.put(("cmd", bytes(message.payload)))
            self._wake.set()
        elif message.topic == self._topic_receipt:
            self._inbox.put(("receipt", bytes(message.payload)))
            self._wake.set()
        elif message.topic == topics.HUB_STATUS:
            self._inbox.put(("hub", bytes(message.payload)))
            self._wake.set()

    # -- worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            try:
                self._check_protocol()
                self._drain_inbox()
                if self._connected.is_set() and not self._stopping.is_set():
                    self._pump()
            except AgentError as exc:  # a store error: log, keep the uplink alive, retry
                log.error("uplink: %s", exc)
                self._stopping.wait(1.0)
            except Exception:  # never let the worker die silently
                log.exception("uplink worker failed; retrying")
                self._stopping.wait(1.0)

    def _drain_inbox(self) -> None:
        while True:
            try:
                kind, value = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "ack":
                self._acked(*value)
            elif kind == "cmd":
                self._command(value)
            elif kind == "receipt":
                self._receipt(value)
            elif kind == "hub":
                self._hub_status(value)
            elif kind == "connected":
                log.info("connected to %s:%d", self._address.host, self._address.port)
                # the broker may have lost what it acknowledged: everything unconfirmed again
                self._inflight.clear()
                self._outbox.resend_all()
                self._publish_status()
            elif kind == "status":
                if self._connected.is_set():
                    self._publish_status()
            elif kind == "disconnected":
                log.warning("disconnected from broker (%s); reconnecting with back-off", value)
            elif kind == "refused":
                self._refused(value)

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        ids = self._inflight.pop(mid, None)
        if ids is None:
            return  # the status message, or a batch from before a client rebuild
        if failed:
            log.error("broker refused batch of %d rows: %s; retrying later", len(ids), reason)
            self._retry_at = time.monotonic() + self._retry_delay
            self._retry_delay = min(self._retry_delay * 2, 60.0)
            return
        self._retry_delay = 1.0
        self.broker_acks += 1

    def _hub_status(self, payload: bytes) -> None:
        try:
            online = json.loads(payload).get("state") == "online"
        except (ValueError, AttributeError):
            return
        if online:
            self.hub_online += 1
            self._outbox.resend_all()

    def _receipt(self, payload: bytes) -> None:
        keys = self._credentials.honoured() if self._credentials else (self._command_key,)
        receipt, reason = None, "no key"
        for key in keys:
            try:
                receipt = verify_receipt(payload, key, self.gateway_id)
                break
            except ProtocolError as exc:
                reason = exc.reason
        if receipt is None:
            self.refused_receipts += 1
            log.warning("receipt refused: %s", reason)
            return
        self.receipts += 1
        confirmed = self._outbox.confirm(receipt)
        self.confirmed_rows += confirmed
        log.debug("receipt %s: %d rows confirmed (%d events named)", receipt.usage,
                  confirmed, len(receipt.events))  # fmt: skip

    def _command(self, payload: bytes) -> None:
        try:
            self._on_command(payload)
        except Exception:
            log.exception("command handler failed")

    def _refused(self, code: int) -> None:
        if self._protocol == MQTTProtocolVersion.MQTTv5 and code in _UNSUPPORTED_PROTOCOL:
            self._fall_back("broker refuses MQTT 5")
        else:
            log.error("broker refused the connection (reason %d); retrying with back-off", code)

    def _check_protocol(self) -> None:
        """Some MQTT 3.1.1 brokers ignore or drop an MQTT 5 CONNECT instead of refusing it."""
        if self._protocol != MQTTProtocolVersion.MQTTv5 or self._connected.is_set():
            return
        started = self._attempt_at
        if self._silent_refusals >= SILENT_REFUSALS:
            self._fall_back(f"{self._silent_refusals} MQTT 5 connects dropped without CONNACK")
        elif started is not None and time.monotonic() - started > self._connack_wait_s:
            self._fall_back(f"no CONNACK to MQTT 5 within {self._connack_wait_s:g} s")

    def _fall_back(self, why: str) -> None:
        log.warning("%s; falling back to MQTT 3.1.1", why)
        self._protocol = MQTTProtocolVersion.MQTTv311
        self._attempt_at = None
        self._silent_refusals = 0
        old = self._client
        old.disconnect()
        old.loop_stop()
        self._inflight.clear()
        self._cursor = self._outbox.last_sent_id()
        self._client = self._new_client()
        self._connect(self._client)

    def _pump(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        outbox = self._outbox
        while len(self._inflight) < self._window and not self._stopping.is_set():
            limit, max_bytes = self._batch_rows, MAX_PAYLOAD - 64
            fresh = outbox.unconfirmed() < outbox.send_window
            batch = outbox.next_batch(self._cursor, limit, max_bytes) if fresh else []
            if batch:
                self._cursor = batch[-1].id
            else:
                batch = outbox.due_batch(limit, max_bytes)
                if not batch:
                    return
                self.resent_batches += 1
            kind = batch[0].kind
            topic = self._topic_usage if kind == "usage" else self._topic_events
            field = "records" if kind == "usage" else "events"
            payload = '{"v":1,"%s":[%s]}' % (field, ",".join(r.body for r in batch))  # noqa: UP031
            info = self._client.publish(topic, payload.encode(), qos=1)
            if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                log.error("publish failed: %s", mqtt.error_string(info.rc))
                return
            self._inflight[info.mid] = [r.id for r in batch]
            self.published_batches += 1
            log.debug("published %s rows %d-%d (%d)", kind, batch[0].id, batch[-1].id, len(batch))

    def _publish_status(self) -> None:
        self._client.publish(self._topic_status, self._status_payload("online"), qos=1, retain=True)

    def _status_payload(self, state: str) -> bytes:
        body: dict[str, Any] = {}
        if state == "online":
            if self._status_extra is not None:
                try:
                    body.update(self._status_extra())
                except Exception:
                    log.exception("status_extra failed")
            body["outbox_depth"] = self._outbox.depth()
            body["unconfirmed"] = self._outbox.unconfirmed()
            body["epoch"] = self._outbox.epoch
        body.update(v=1, state=state, at=datetime.now(UTC).isoformat())
        return json.dumps(body, default=str).encode()

    # -- client -------------------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"smsa-gw-{self.gateway_id}",
            protocol=self._protocol,
            clean_session=None if v5 else False,
        )
        client.on_pre_connect = self._on_pre_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.reconnect_delay_set(*self._reconnect_delay)
        client.max_inflight_messages_set(self._window + 2)
        client.will_set(
            self._topic_status, json.dumps({"v": 1, "state": "offline"}), qos=1, retain=True
        )
        if self._address.username is not None:
            client.username_pw_set(self._address.username, self._password())
        if self._address.tls:
            client.tls_set(ca_certs=self._tls_ca, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        return client

    def _connect(self, client: mqtt.Client) -> None:
        properties = None
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            client.connect_async(
                self._address.host,
                self._address.port,
                keepalive=self._keepalive_s,
                clean_start=False,
                properties=properties,
            )
        else:
            client.connect_async(
                self._address.host, self._address.port, keepalive=self._keepalive_s
            )
        client.loop_start()
