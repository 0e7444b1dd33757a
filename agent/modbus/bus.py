"""One Modbus line (RTU serial or TCP), used by exactly one thread: its poller.

Wraps a pymodbus 3.16 sync client. pymodbus' own retries are off (the poller retries with
back-off per meter); every request gets the meter's own timeout; on RTU a silent gap of at least
``inter_frame_ms`` (default 3.5 characters, 1.75 ms above 19,200 baud) separates a response from
the next request; a lost socket or serial port is reopened on the next request. Every failure is
translated into :class:`agent.errors.BusError` with a ``kind``: ``timeout`` (no or garbled
answer, CRC errors included), ``exception`` (the device answered a Modbus exception),
``connection`` (socket or port lost or cannot be opened) or ``frame`` (an answer that does not
fit the request).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from agent.errors import BusError
from agent.settings import RtuBus, TcpBus

log = logging.getLogger(__name__)

READ_FUNCTIONS = {"holding": 3, "input": 4, "coil": 1, "discrete": 2}


def default_gap_s(bus: TcpBus | RtuBus) -> float:
    """The silent interval between frames: 3.5 characters on RTU, none on TCP."""
    if bus.inter_frame_ms is not None:
        return bus.inter_frame_ms / 1000
    if isinstance(bus, TcpBus):
        return 0.0
    if bus.baudrate > 19_200:
        return 0.00175
    bits = 1 + bus.bytesize + (0 if bus.parity == "N" else 1) + bus.stopbits
    return 3.5 * bits / bus.baudrate


class ModbusLine:
    """Serialized requests on one bus; not thread-safe by design (one owner thread)."""

    def __init__(self, settings: TcpBus | RtuBus) -> None:
        self.settings = settings
        self.name = settings.name
        self.gap_s = default_gap_s(settings)
        self._last_io = 0.0
        self._client: ModbusTcpClient | ModbusSerialClient
        if isinstance(settings, TcpBus):
            self._client = ModbusTcpClient(
                settings.host, port=settings.port, timeout=settings.timeout_s, retries=0
            )
        else:
            self._client = _SerialClient(
                settings.device,
                baudrate=settings.baudrate,
                parity=settings.parity,
                stopbits=settings.stopbits,
                bytesize=settings.bytesize,
                timeout=settings.timeout_s,
                retries=0,
            )
        self.reconnects = 0
        self._was_connected = False
        client = self._client
        self._readers: dict[str, Any] = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }

    @property
    def connected(self) -> bool:
        return bool(self._client.connected)

    def close(self) -> None:
        self._client.close()

    def read(self, unit: int, function: str, address: int, count: int, timeout: float) -> list[int]:
        """``count`` words (or bits, as 0/1) from ``address`` of ``unit``."""
        call = self._readers.get(function)
        if call is None:
            raise ValueError(f"cannot read a {function}")
        response = self._call(unit, timeout, call, address, count=count, device_id=unit)
        if function in ("coil", "discrete"):
            bits = list(getattr(response, "bits", []) or [])
            if len(bits) < count:
                raise BusError(self.name, unit, "frame", f"{len(bits)} bits for {count}")
            return [int(bool(b)) for b in bits[:count]]
        words = list(getattr(response, "registers", []) or [])
        if len(words) != count:
            raise BusError(self.name, unit, "frame", f"{len(words)} words for {count}")
        return words

    def write_registers(self, unit: int, address: int, values: list[int], timeout: float) -> None:
        self._call(unit, timeout, self._client.write_registers, address, values, device_id=unit)

    def write_register(self, unit: int, address: int, value: int, timeout: float) -> None:
        self._call(unit, timeout, self._client.write_register, address, value, device_id=unit)

    def write_coil(self, unit: int, address: int, value: bool, timeout: float) -> None:
        self._call(unit, timeout, self._client.write_coil, address, value, device_id=unit)

    def _call(self, unit: int, timeout: float, fn: Any, *args: Any, **kwargs: Any) -> Any:
        self._client.comm_params.timeout_connect = timeout
        self._quiet()
        try:
            if not self._client.connected:
                if self._was_connected:
                    self.reconnects += 1
                if not self._client.connect():
                    raise BusError(self.name, unit, "connection", "cannot open the line")
            self._was_connected = True
            response = fn(*args, **kwargs)
        except ConnectionException as exc:
            self._client.close()
            raise BusError(self.name, unit, "connection", str(exc)) from exc
        except ModbusIOException as exc:
            self._flush()
            text = str(exc)
            kind = "timeout" if "No response" in text or "retries" in text else "frame"
            raise BusError(self.name, unit, kind, _short(text)) from exc
        except ModbusException as exc:
            self._flush()
            raise BusError(self.name, unit, "frame", _short(str(exc))) from exc
        except (OSError, ValueError) as exc:
            self._client.close()
            raise BusError(self.name, unit, "connection", str(exc)) from exc
        finally:
            self._last_io = time.monotonic()
        if response is None:
            raise BusError(self.name, unit, "timeout", "no response")
        if response.isError():
            code = getattr(response, "exception_code", 0)
            raise BusError(self.name, unit, "exception", f"exception code {code}")
        return response

    def _quiet(self) -> None:
        """Hold the line silent for the inter-frame gap since the last traffic."""
        if self.gap_s <= 0:
            return
        wait = self._last_io + self.gap_s - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _flush(self) -> None:
        """Drop a late or garbled answer so that it cannot be taken for the next one."""
        sock = self._client.socket
        if sock is None:
            return
        try:
            if isinstance(self._client, ModbusSerialClient):
                getattr(sock, "reset_input_buffer", lambda: None)()
            else:
                sock.setblocking(False)
                try:
                    while sock.recv(4096):
                        pass
                except (BlockingIOError, InterruptedError):
                    pass
        except OSError:
            self._client.close()


class _SerialClient(ModbusSerialClient):
    """pymodbus' serial client, reading an answer as soon as its bytes arrive.

    pymodbus 3.16 polls the port every 4 characters and returns only once the byte count stood
    still for a whole poll: up to 8 ms of dead time per request at 9600 baud, 15 % of a short
    read. Here ``recv`` blocks in the driver for the first byte (up to the request's timeout)
    and returns it with whatever else has arrived; pymodbus' receive loop keeps reading until
    the frame is complete (or the timeout), so a frame split across reads is reassembled.
    This overrides pymodbus' ``recv``: pymodbus is pinned to 3.16.* for it (``tests/test_pins.py``).
    """

    def recv(self, size: int | None) -> bytes:
        port = self.socket
        if not port:
            raise ConnectionException(str(self))
        try:
            timeout = self.comm_params.timeout_connect
            if port.timeout != timeout:
                port.timeout = timeout
            first = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            return first + (port.read(waiting) if waiting else b"")
        except (OSError, ValueError) as exc:
            self.close()
            raise ConnectionException(str(self)) from exc


def _short(text: str) -> str:
    return text.replace("\n", " ")[:200]
