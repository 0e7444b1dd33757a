"""The Modbus server: pymodbus 3.16 transport, framers and PDUs around the simulated bus.

pymodbus hooks used (checked against the installed 3.16 source):

- the datastore: the PDU layer calls ``context.async_getValues(dev_id, fc, address, count)`` and
  ``async_setValues(dev_id, fc, address, values)`` on the server context. :class:`BusContext`
  implements that interface over :class:`~firmware_sim.bus.Bus`, so every read is computed
  from the physics at that instant and every write is checked like the real device does.
  (In 3.16 ``ModbusDeviceContext`` and the data blocks are shims converted to ``SimDevice``;
  a context flagged ``old_simulator`` is used as is.)
- the request handler: ``ModbusBaseServer.callback_new_connection`` returns the per-connection
  ``ServerRequestHandler``; :class:`SimRequestHandler` replaces its ``handle_request`` to apply
  faults (silence, exception, bad CRC, delay) and the line model before sending the frame.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.framer import FramerBase, FramerType
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from firmware_sim.bus import Bus, Fault
from firmware_sim.control import FaultMode
from firmware_sim.device import DEVICE_FAILURE
from firmware_sim.line import RTU_OVERHEAD, Line

log = logging.getLogger(__name__)

GATEWAY_NO_RESPONSE = 0x0B


class BusContext(ModbusServerContext):
    """The datastore interface of pymodbus' PDU layer, answered by the simulated bus."""

    def __init__(self, bus: Bus) -> None:  # pylint: disable=super-init-not-called
        # ModbusServerContext.__init__ would wrap SimDevices; this context serves the bus
        # itself, so ModbusBaseServer must use it as is (the ``old_simulator`` path).
        self.bus = bus
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}

    async def async_getValues(  # noqa: N802 (pymodbus interface)
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        result = self.bus.read(device_id, func_code, address, count)
        return ExcCodes(result) if isinstance(result, int) else result

    async def async_setValues(  # noqa: N802 (pymodbus interface)
        self,
        device_id: int,
        func_code: int,
        address: int,
        values: Sequence[int] | Sequence[bool],
    ) -> ExcCodes | None:
        result = self.bus.write(device_id, func_code, address, list(values))
        return None if result is None else ExcCodes(result)

    def device_ids(self) -> list[int]:
        return self.bus.units


@dataclass
class Responder:
    """Decides what (and when) the bus answers one request; shared by all connections."""

    bus: Bus
    line: Line
    line_timing: bool
    rtu: bool
    bus_free_at: float = 0.0

    async def respond(
        self, context: BusContext, framer: FramerBase, pdu: ModbusPDU, arrived: float
    ) -> bytes | None:
        unit, fc = pdu.dev_id, pdu.function_code
        # With the line model the bus is one resource: a request starts once the line is free.
        start = max(arrived, self.bus_free_at) if self.line_timing else arrived
        if unit not in self.bus.devices:
            if self.rtu:
                self._silence(start, pdu)
                return None  # nobody on the line has this address
            response: ModbusPDU = ExceptionResponse(fc, GATEWAY_NO_RESPONSE)
            fault = None
        else:
            address, count = request_span(pdu)
            fault = self.bus.fault(unit, fc, address, count)
            if fault is not None and fault.mode == FaultMode.NO_RESPONSE:
                log.debug("unit %d: no response (fault)", unit)
                self._silence(start, pdu)
                return None
            response = await self._answer(context, pdu, fault)
        response.transaction_id = pdu.transaction_id
        response.dev_id = unit
        packet = framer.buildFrame(response)
        if fault is not None and fault.mode == FaultMode.BAD_CRC and self.rtu:
            packet = packet[:-2] + bytes([packet[-2] ^ 0xFF, packet[-1] ^ 0xFF])
        deadline = start
        if self.line_timing:
            deadline += self.line.exchange_s(rtu_size(pdu), rtu_size(response))
        if fault is not None and fault.mode == FaultMode.SLOW:
            deadline += fault.delay_s  # a slow device holds the line while the master waits
        if self.line_timing:
            self.bus_free_at = deadline
        wait = deadline - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return packet

    def _silence(self, start: float, pdu: ModbusPDU) -> None:
        """No answer: the line was still busy for the request itself."""
        if self.line_timing:
            self.bus_free_at = start + self.line.frame_s(rtu_size(pdu))

    async def _answer(self, context: BusContext, pdu: ModbusPDU, fault: Fault | None) -> ModbusPDU:
        fc = pdu.function_code
        if fault is not None and fault.mode == FaultMode.EXCEPTION:
            return ExceptionResponse(fc, fault.exception_code)
        if fault is not None and fault.mode == FaultMode.BAD_CRC and not self.rtu:
            # Modbus TCP has no CRC: a TCP gateway that got a garbled answer on its RTU side
            # reports "gateway target device failed to respond".
            return ExceptionResponse(fc, GATEWAY_NO_RESPONSE)
        try:
            return await pdu.datastore_update(context, pdu.dev_id)
        except Exception:  # a datastore bug must not kill the connection; answer like a device
            log.exception("unit %d: request %s failed", pdu.dev_id, pdu)
            return ExceptionResponse(fc, DEVICE_FAILURE)


def request_span(pdu: ModbusPDU) -> tuple[int, int]:
    """The (address, count) a request touches (the write side for read/write requests)."""
    if hasattr(pdu, "write_address"):
        return int(getattr(pdu, "write_address", 0)), len(getattr(pdu, "write_registers", []))
    address = int(getattr(pdu, "address", 0))
    count = getattr(pdu, "count", 0) or len(getattr(pdu, "registers", []) or []) or 1
    return address, int(count)


def rtu_size(pdu: ModbusPDU) -> int:
    """Bytes of ``pdu`` as an RTU frame (unit id, function code, data, CRC)."""
    return RTU_OVERHEAD + 1 + len(pdu.encode())


class SimRequestHandler(ServerRequestHandler):
    """One connection (a TCP client, or the serial line): queue requests, answer each."""

    def __init__(self, owner: "SimTcpServer | SimSerialServer") -> None:
        super().__init__(owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect)
        self.responder = owner.responder
        self._pending: deque[tuple[ModbusPDU, tuple[Any, ...] | None, float]] = deque()

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        arrived = time.monotonic()
        used: int = super().callback_data(data, addr)
        if self.last_pdu:
            self._pending.append((self.last_pdu, self.last_addr, arrived))
        return used

    async def handle_request(self) -> None:
        if not self._pending:
            return
        pdu, addr, arrived = self._pending.popleft()
        packet = await self.responder.respond(self.server.context, self.framer, pdu, arrived)
        if packet and self.transport:
            self.send(self.trace_packet(True, packet), addr=addr)


class SimTcpServer(ModbusTcpServer):
    def __init__(self, responder: Responder, host: str, port: int) -> None:
        self.responder = responder
        super().__init__(BusContext(responder.bus), framer=FramerType.SOCKET, address=(host, port))

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)

    @property
    def port(self) -> int:
        """The port actually bound (useful when asked for port 0)."""
        sockets = getattr(self.transport, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else 0


class SimSerialServer(ModbusSerialServer):
    def __init__(self, responder: Responder, device: str) -> None:
        self.responder = responder
        line = responder.line
        super().__init__(
            BusContext(responder.bus),
            framer=FramerType.RTU,
            port=device,
            baudrate=line.baudrate,
            parity=line.parity,
            stopbits=line.stopbits,
            bytesize=8,
            reconnect_delay=0.5,
        )

    def callback_new_connection(self) -> SimRequestHandler:
        return SimRequestHandler(self)
