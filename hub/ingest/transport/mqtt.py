"""The hub's MQTT client: URL parsing and a paho 2.x client set up for no-loss ingest.

MQTT 5 by default: a persistent session (``clean_start`` off, session expiry), a Receive
Maximum as large as the worker's queue, and ``manual_ack`` so a QoS 1 message is acknowledged
only after the batch holding it is committed. (With MQTT 3.1.1 the broker's own in-flight
limit applies, 20 by default in Mosquitto, which caps batches at 20 messages.)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.errors import InvalidInputError
from hub.ingest.transport.paho_bulk import BulkClient

MAX_RECEIVE = 65_535


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """``mqtt://[user:password@]host[:port]`` or ``mqtts://…`` (TLS, default port 8883)."""
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise InvalidInputError("mqtt", f"URL must start with mqtt:// or mqtts://, got {url!r}")
        tls = parts.scheme in ("mqtts", "ssl")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise InvalidInputError("mqtt", f"bad port in {url!r}") from exc
        if not parts.hostname:
            raise InvalidInputError("mqtt", f"no host in {url!r}")
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def make_client(
    url: BrokerUrl,
    client_id: str,
    *,
    manual_ack: bool = True,
    v5: bool = True,
    ca_file: str | None = None,
) -> BulkClient:
    """A TLS URL verifies the broker's certificate and host name against ``ca_file`` (or the
    system's CAs when None)."""
    client = BulkClient(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )
    if url.username is not None:
        client.username_pw_set(url.username, url.password)
    if url.tls:
        client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
    client.max_queued_messages_set(0)  # outgoing commands queue while disconnected
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(session_expiry_s: int, receive_maximum: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    props.ReceiveMaximum = max(1, min(receive_maximum, MAX_RECEIVE))
    return props
