"""Wiring: a configuration to a running server, until asked to stop."""

import asyncio
import logging
import os
import socket
import termios
from collections.abc import Callable

import serial
from serial import SerialException

from firmware_sim.bus import Bus, build_bus
from firmware_sim.clock import SimClock
from firmware_sim.config import SimConfig
from firmware_sim.errors import ListenError
from firmware_sim.line import Line
from firmware_sim.server import Responder, SimSerialServer, SimTcpServer

log = logging.getLogger(__name__)


def make_bus(config: SimConfig, clock: SimClock) -> Bus:
    return build_bus(
        clock,
        config.model,
        list(config.meters),
        pairings=list(config.pairings),
        relay_model=config.relay_model,
        profile=config.profile,
        power_factor_milli=config.power_factor_milli,
    )


def check_tcp(host: str, port: int) -> None:
    """Fail early, with the system's reason, if ``host:port`` cannot be bound."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ListenError(f"{host}:{port}", exc.strerror or "unknown host") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            raise ListenError(f"{host}:{port}", exc.strerror or str(exc)) from exc


def check_serial(device: str, line: Line) -> None:
    """Fail early, with the system's reason, if ``device`` cannot be opened as configured."""
    if not os.path.exists(device):
        raise ListenError(device, "no such device")
    try:
        port = serial.Serial(
            device, line.baudrate, parity=line.parity, stopbits=line.stopbits, timeout=0
        )
    except (SerialException, OSError, termios.error, ValueError) as exc:
        reason = exc.args[-1] if exc.args else type(exc).__name__
        raise ListenError(device, f"cannot configure the device: {reason}") from exc
    port.close()


async def serve(
    config: SimConfig,
    stop: asyncio.Event,
    ready: Callable[[str], None] = lambda line: None,
    clock: SimClock | None = None,
) -> None:
    """Serve until ``stop`` is set; ``ready`` gets a line like
    ``listening tcp 127.0.0.1:5020 units 1,2`` once clients can connect."""
    clock = clock or SimClock(config.speed, start_epoch_ns=config.start_epoch_ns)
    bus = make_bus(config, clock)
    units = ",".join(str(u) for u in bus.units)
    server: SimTcpServer | SimSerialServer
    if config.tcp is not None:
        host, port = config.tcp
        check_tcp(host, port)
        server = SimTcpServer(
            Responder(bus, config.line, config.line_timing, rtu=False), host, port
        )
    else:
        assert config.serial is not None
        check_serial(config.serial, config.line)
        server = SimSerialServer(
            Responder(bus, config.line, config.line_timing, rtu=True), config.serial
        )
    where = f"{config.tcp[0]}:{config.tcp[1]}" if config.tcp else str(config.serial)
    side: SimTcpServer | None = None
    if config.control_tcp is not None:
        check_tcp(*config.control_tcp)
        side = SimTcpServer(Responder(bus, config.line, False, rtu=False), *config.control_tcp)
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:
        raise ListenError(where, "the server could not start") from exc
    except (OSError, termios.error, SerialException) as exc:
        # pyserial and termios refuse settings a device cannot take (e.g. parity on a pty).
        reason = exc.args[-1] if exc.args else type(exc).__name__
        raise ListenError(where, f"cannot configure the device: {reason}") from exc
    try:
        if side is not None:  # the same bus over TCP too, unaffected by the line model
            await side.serve_forever(background=True)
        if isinstance(server, SimTcpServer):
            where = f"tcp {config.tcp[0] if config.tcp else ''}:{server.port}"
        else:
            where = f"serial {config.serial}"
        line = config.line
        log.info(
            "simulating %s at %s: units %s, speed %s, line %d %d%s%d%s",
            config.model.model,
            where,
            units,
            clock.speed,
            line.baudrate,
            8,
            line.parity,
            line.stopbits,
            " (line timing on)" if config.line_timing else "",
        )
        ready(f"listening {where} units {units}")
        await stop.wait()
    finally:
        await server.shutdown()
        if side is not None:
            await side.shutdown()
        log.info("stopped")
