"""Command-line options to a validated configuration (pure apart from reading register maps)."""

import argparse
import os
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

from firmware_sim.bus import MeterSpec, Pairing
from firmware_sim.clock import parse_speed
from firmware_sim.errors import ConfigError
from firmware_sim.line import Line
from firmware_sim.profile import DailyProfile, parse_profile
from hardware.errors import RegisterMapError
from hardware.regmap import MeterModel, load_model

DEFAULT_MODEL = "dds238-2-zn-sr"
DEFAULT_RELAY_MODEL = "modbus-relay-module"
DEFAULT_LOAD_W = 1000


@dataclass(frozen=True)
class SimConfig:
    model: MeterModel
    meters: tuple[MeterSpec, ...]
    speed: Fraction = Fraction(1)
    tcp: tuple[str, int] | None = None
    serial: str | None = None
    control_tcp: tuple[str, int] | None = None
    line: Line = field(default_factory=Line)
    line_timing: bool = False
    pairings: tuple[Pairing, ...] = ()
    relay_model: MeterModel | None = None
    profile: DailyProfile | None = None
    power_factor_milli: int = 950
    start_epoch_ns: int | None = None
    log_level: str = "INFO"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one ConfigError (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError("arguments", message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="smsa-meter-sim",
        description="Simulated Modbus energy meters on a TCP port or a serial device.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--tcp", metavar="HOST:PORT", help="serve Modbus TCP (port 0: any free)")
    where.add_argument("--serial", metavar="DEVICE", help="serve Modbus RTU on a serial device")
    p.add_argument(
        "--control-tcp",
        metavar="HOST:PORT",
        help="with --serial: also serve the same devices over Modbus TCP (to steer them)",
    )
    p.add_argument("--baudrate", type=int, default=9600, help="serial/line-model baud (9600)")
    p.add_argument("--parity", default="N", help="N, E or O (N)")
    p.add_argument("--stopbits", type=int, default=1, help="1 or 2 (1)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"register map ({DEFAULT_MODEL})")
    p.add_argument(
        "--register-path",
        default="",
        metavar="DIRS",
        help=f"more register-map directories, separated by {os.pathsep!r}",
    )
    p.add_argument(
        "--meter",
        action="append",
        default=[],
        metavar="UNIT[:LOAD_W][@MODEL]",
        help=f"a simulated meter (repeatable; default one at unit 1, {DEFAULT_LOAD_W} W)",
    )
    p.add_argument("--speed", default="1", help="simulated seconds per real second (1)")
    p.add_argument(
        "--line-timing", action="store_true", help="delay answers by their RS-485 on-wire time"
    )
    p.add_argument(
        "--relay-unit",
        action="append",
        default=[],
        metavar="UNIT:METER_UNIT[:CHANNEL]",
        help="a relay module at UNIT whose coil CHANNEL (0) switches the meter at METER_UNIT",
    )
    p.add_argument("--relay-model", default=DEFAULT_RELAY_MODEL, help="model of --relay-unit")
    p.add_argument("--profile", help="daily load profile: HH[:MM]=FACTOR,... or household, shop")
    p.add_argument("--power-factor", default="0.95", help="power factor of every load (0.95)")
    p.add_argument("--start-time", help="simulated wall-clock start, ISO 8601 (default: now)")
    p.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR (INFO)")
    return p


def parse_args(argv: list[str] | None = None) -> SimConfig:
    """Options to a configuration; raises :class:`ConfigError` naming the bad option."""
    args = parser().parse_args(argv)
    dirs = tuple(Path(p) for p in args.register_path.split(os.pathsep) if p)
    model = _model(args.model, "--model", dirs)
    meters = tuple(_meter(text, dirs) for text in args.meter) or (MeterSpec(1, DEFAULT_LOAD_W),)
    pairings = tuple(_pairing(text) for text in args.relay_unit)
    level = args.log_level.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("--log-level", f"{args.log_level!r}: DEBUG, INFO, WARNING or ERROR")
    return SimConfig(
        model=model,
        meters=meters,
        speed=parse_speed(args.speed),
        tcp=_host_port(args.tcp) if args.tcp else None,
        serial=args.serial,
        control_tcp=_control_tcp(args.control_tcp, args.serial),
        line=Line(args.baudrate, args.parity.upper(), args.stopbits),
        line_timing=args.line_timing,
        pairings=pairings,
        relay_model=_model(args.relay_model, "--relay-model", dirs) if pairings else None,
        profile=parse_profile(args.profile) if args.profile else None,
        power_factor_milli=_power_factor(args.power_factor),
        start_epoch_ns=_start_time(args.start_time) if args.start_time else None,
        log_level=level,
    )


def _control_tcp(text: str | None, serial: str | None) -> tuple[str, int] | None:
    if text is None:
        return None
    if serial is None:
        raise ConfigError("--control-tcp", "only with --serial")
    return _host_port(text, "--control-tcp")


def _model(name: str, option: str, dirs: tuple[Path, ...]) -> MeterModel:
    try:
        return load_model(name, dirs)
    except RegisterMapError as exc:
        raise ConfigError(option, f"{name!r}: {exc.reason}") from exc


def _int(text: str, option: str, what: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise ConfigError(option, f"{what} {text!r} is not an integer") from exc


def _unit(text: str, option: str) -> int:
    unit = _int(text, option, "unit")
    if not 1 <= unit <= 247:
        raise ConfigError(option, f"unit {unit}: must be 1 to 247")
    return unit


def _meter(text: str, dirs: tuple[Path, ...]) -> MeterSpec:
    spec, _, model_name = text.partition("@")
    unit_text, _, load_text = spec.partition(":")
    unit = _unit(unit_text, "--meter")
    load = _int(load_text, "--meter", "load") if load_text else DEFAULT_LOAD_W
    if load < 0:
        raise ConfigError("--meter", f"unit {unit}: load {load} W must not be negative")
    if load > 0xFFFFFFFF:
        raise ConfigError("--meter", f"unit {unit}: load {load} W is too large")
    return MeterSpec(unit, load, _model(model_name, "--meter", dirs) if model_name else None)


def _pairing(text: str) -> Pairing:
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise ConfigError("--relay-unit", f"{text!r}: expected UNIT:METER_UNIT[:CHANNEL]")
    channel = _int(parts[2], "--relay-unit", "channel") if len(parts) == 3 else 0
    if channel < 0:
        raise ConfigError("--relay-unit", f"channel {channel} must not be negative")
    return Pairing(_unit(parts[0], "--relay-unit"), _unit(parts[1], "--relay-unit"), channel)


def _host_port(text: str, option: str = "--tcp") -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(option, f"{text!r}: expected HOST:PORT")
    port = _int(port_text, option, "port")
    if not 0 <= port <= 65535:
        raise ConfigError(option, f"port {port}: must be 0 to 65535")
    return host.strip("[]"), port


def _power_factor(text: str) -> int:
    try:
        milli = Decimal(text) * 1000
    except InvalidOperation as exc:
        raise ConfigError("--power-factor", f"not a number: {text!r}") from exc
    if not 1 <= milli <= 1000:
        raise ConfigError("--power-factor", f"{text}: must be in (0, 1]")
    return int(milli)


def _start_time(text: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError("--start-time", f"not an ISO 8601 time: {text!r}") from exc
    if when.tzinfo is None:
        raise ConfigError("--start-time", "give a time zone, e.g. 2026-01-01T00:00:00+00:00")
    return int(when.timestamp()) * 1_000_000_000
