"""A paho client that reads ahead and acknowledges in bulk: the ingest pump's MQTT client.

paho 2.x reads every MQTT packet with three or more ``recv()`` calls (the command byte, each
length byte, the body) and sends every PUBACK with a ``send()`` of its own, after waking its
network thread through a socket pair. Draining a backlog of small QoS 1 messages, those system
calls cost the pump about as much as everything else it does. This client:

- wraps a plain TCP socket in ``ReadAhead``, which fills a buffer with one ``recv()`` and
  serves paho's small reads from it. paho's loop asks a socket for ``pending()`` bytes (its hook
  for a TLS socket's own buffer) and reads on without waiting in ``select()`` while any are
  buffered. TLS sockets are left as they are: they buffer already;
- reads on while packets are buffered, where paho's loop reads one per ``select()``;
- hands a QoS 0 or 1 PUBLISH straight to ``on_publish_received(topic, payload, mid, qos)``,
  skipping paho's message object and its MQTT 5 property parsing (the hub uses no property of
  an incoming message; the broker sends no topic aliases since the client allows none); any
  other PUBLISH, or one without that callback, goes through paho as usual;
- acknowledges many QoS 1 messages with one queued write (``ack_many``).

These use paho 2.x internals (``_create_socket``, ``_handle_publish``, ``_in_packet``,
``_packet_queue``, ``_sock``); ``tests/hub/ingest/test_paho_bulk.py`` checks them against a real
broker, and paho-mqtt is pinned to the series they were checked with (``pyproject.toml``,
``tests/test_pins.py``).
"""

from __future__ import annotations

import socket
import sys
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt

READ_AHEAD = 256 * 1024  # bytes asked of the kernel per recv()
PUBACK = 0x40


class ReadAhead:
    """A connected socket whose reads are served from a buffer filled ``READ_AHEAD`` at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            buf = self._sock.recv(READ_AHEAD)  # BlockingIOError when nothing is there
            if not buf:
                return buf  # end of stream
            self._buf, pos = buf, 0
        end = min(pos + size, len(buf))
        self._pos = end
        return buf[pos:end]

    def pending(self) -> int:
        """Bytes read from the kernel and not yet handed to paho."""
        return len(self._buf) - self._pos

    def send(self, data: bytes | bytearray | memoryview) -> int:
        return self._sock.send(data)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def pubacks(mids: Sequence[int]) -> bytes:
    """PUBACK packets (success, no properties: valid in MQTT 3.1.1 and 5) for ``mids``."""
    n = len(mids)
    ids = array("H", mids)
    if sys.byteorder == "little":
        ids.byteswap()  # packet identifiers are big-endian on the wire
    wire = ids.tobytes()
    out = bytearray(4 * n)
    out[0::4] = bytes([PUBACK]) * n
    out[1::4] = b"\x02" * n
    out[2::4] = wire[0::2]
    out[3::4] = wire[1::2]
    return bytes(out)


def _publish_parts(packet: bytearray, qos: int, v5: bool) -> tuple[str, bytes, int]:
    """Topic, payload and packet identifier of a PUBLISH's variable header and payload."""
    end = 2 + ((packet[0] << 8) | packet[1])
    topic = packet[2:end].decode()
    mid = 0
    if qos:
        mid = (packet[end] << 8) | packet[end + 1]
        end += 2
    if v5:  # skip the properties: a variable byte integer length, then the properties
        length = shift = 0
        while True:
            byte = packet[end]
            end += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        end += length
    if end > len(packet):
        raise ValueError("PUBLISH shorter than its header")
    return topic, bytes(packet[end:]), mid


class BulkClient(mqtt.Client):
    on_publish_received: Callable[[str, bytes, int, int], None] | None = None

    def _handle_publish(self) -> mqtt.MQTTErrorCode:
        handler = self.on_publish_received
        command = self._in_packet["command"]
        qos = (command & 0x06) >> 1
        if handler is None or qos > 1:
            return super()._handle_publish()
        try:
            topic, payload, mid = _publish_parts(
                self._in_packet["packet"], qos, self._protocol == mqtt.MQTTv5
            )
        except (IndexError, ValueError):  # malformed, or a topic that is not UTF-8
            return super()._handle_publish()
        handler(topic, payload, mid, qos)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return mqtt.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and not self._ssl:
            return ReadAhead(sock)
        return sock

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        """Read packets while any are buffered (paho's own loop reads one per ``select()``)."""
        rc = super().loop_read(max_packets)
        sock = self._sock
        while rc == mqtt.MQTT_ERR_SUCCESS and isinstance(sock, ReadAhead) and sock.pending():
            rc = super().loop_read(max_packets)
            if self._sock is not sock:
                break
        return rc

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge the QoS 1 messages ``mids`` (``manual_ack``) with one write."""
        if mids and self._sock is not None:
            self._packet_queue(PUBACK, pubacks(mids), 0, 0)

    def read_ahead(self) -> bool:
        """True when this connection's reads go through ``ReadAhead`` (for tests)."""
        return isinstance(self._sock, ReadAhead)
