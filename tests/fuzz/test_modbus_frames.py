"""Garbage and truncated Modbus TCP answers against the agent's bus layer (issue 20, item 3).

A real TCP server on 127.0.0.1 answers each request of ``agent.modbus.bus.ModbusLine`` with
what hypothesis draws: random bytes, a valid answer cut short or with a byte flipped, another
transaction id, unit or function, a Modbus exception, a length field that lies, silence, or a
closed connection. Each read returns exactly the words asked for or raises ``BusError`` (of a
known kind) within its timeout; nothing else escapes, and the very next exchange with an honest
answer returns that answer's words: no garbage is ever taken for a later reply.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.errors import BusError
from agent.modbus.bus import ModbusLine
from agent.settings import TcpBus
from tests.support import free_port

TIMEOUT_S = 0.05
COUNT = 2
KINDS = {"timeout", "exception", "connection", "frame"}


def answer(tid: int, unit: int, words: list[int], function: int = 3) -> bytes:
    """An honest Modbus TCP answer to a read of ``len(words)`` holding registers."""
    pdu = bytes([function, 2 * len(words)]) + b"".join(struct.pack(">H", w) for w in words)
    return struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu


@dataclass
class Reply:
    """How the server answers the next request: ``build(tid, unit)`` -> bytes to send, or None
    to stay silent; ``close`` drops the connection after sending."""

    kind: str
    data: bytes = b""
    cut: int = 0
    flip: tuple[int, int] = (0, 0)
    close: bool = False

    def build(self, tid: int, unit: int) -> bytes | None:
        honest = answer(tid, unit, [0x1234, 0xABCD])
        match self.kind:
            case "garbage":
                return self.data
            case "truncated":
                return honest[: self.cut % len(honest)]
            case "flipped":
                at, bit = self.flip
                i = at % len(honest)
                return honest[:i] + bytes([honest[i] ^ (1 << (bit % 8))]) + honest[i + 1 :]
            case "other_tid":
                return answer((tid + 1) & 0xFFFF, unit, [1, 2])
            case "other_unit":
                return answer(tid, (unit + 1) & 0xFF, [1, 2])
            case "other_function":
                return answer(tid, unit, [1, 2], function=4)
            case "exception":
                return struct.pack(">HHHBBB", tid, 0, 3, unit, 0x83, self.cut % 256)
            case "lying_length":
                return honest[:4] + struct.pack(">H", self.cut % 300) + honest[6:]
            case "too_many_words":
                return answer(tid, unit, [7] * (3 + self.cut % 60))
            case "extra_bytes":
                return honest + self.data
            case "silent":
                return None
        return honest


replies = st.one_of(
    st.builds(Reply, kind=st.just("garbage"), data=st.binary(min_size=1, max_size=300)),
    st.builds(Reply, kind=st.just("truncated"), cut=st.integers(0, 20)),
    st.builds(
        Reply, kind=st.just("flipped"), flip=st.tuples(st.integers(0, 20), st.integers(0, 7))
    ),
    st.builds(Reply, kind=st.sampled_from(["other_tid", "other_unit", "other_function", "silent"])),
    st.builds(
        Reply,
        kind=st.sampled_from(["exception", "lying_length", "too_many_words"]),
        cut=st.integers(0, 1000),
    ),
    st.builds(Reply, kind=st.just("extra_bytes"), data=st.binary(min_size=1, max_size=40)),
    st.builds(Reply, kind=st.just("garbage"), data=st.binary(max_size=20), close=st.just(True)),
)


@dataclass
class Device:
    """A Modbus TCP server thread that answers as told (``plan``), one reply per request."""

    port: int
    plan: list[Reply] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self, listener: socket.socket) -> None:
        listener.settimeout(0.05)
        while not self.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                self._talk(conn)

    def _talk(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        while not self.stop.is_set():
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while len(buffer) >= 12:  # a read request: MBAP (7) + function, address, count (5)
                tid, _, _, unit = struct.unpack(">HHHB", buffer[:7])
                buffer = buffer[12:]
                with self.lock:
                    reply = self.plan.pop(0) if self.plan else Reply("honest")
                data = reply.build(tid, unit)
                try:
                    if data:
                        conn.sendall(data)
                except OSError:
                    return
                if reply.close:
                    return


@pytest.fixture(scope="module")
def device() -> Iterator[Device]:
    port = free_port()
    listener = socket.create_server(("127.0.0.1", port))
    dev = Device(port)
    thread = threading.Thread(target=dev.serve, args=(listener,), daemon=True)
    thread.start()
    try:
        yield dev
    finally:
        dev.stop.set()
        thread.join(5)
        listener.close()


@pytest.fixture(scope="module")
def line(device: Device) -> Iterator[ModbusLine]:
    bus = TcpBus(name="fuzz", transport="tcp", host="127.0.0.1", port=device.port,
                 timeout_s=TIMEOUT_S)  # fmt: skip
    made = ModbusLine(bus)
    try:
        yield made
    finally:
        made.close()


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(reply=replies)
def test_a_bad_answer_is_a_bus_error_and_never_a_later_reply(
    device: Device, line: ModbusLine, reply: Reply
) -> None:
    with device.lock:
        device.plan[:] = [reply, Reply("honest")]
    started = time.monotonic()
    try:
        words = line.read(1, "holding", 0, COUNT, TIMEOUT_S)
    except BusError as exc:
        assert exc.kind in KINDS, exc
    else:
        assert len(words) == COUNT and all(0 <= w <= 0xFFFF for w in words)
    assert time.monotonic() - started < 10 * TIMEOUT_S + 1.0
    for _ in range(3):  # a timeout or closed line may cost a try or two to reopen
        try:
            assert line.read(1, "holding", 0, COUNT, 1.0) == [0x1234, 0xABCD]
            break
        except BusError as exc:
            assert exc.kind in {"connection", "timeout"}, exc
    else:
        pytest.fail(f"the line did not recover after {reply}")
