"""Real peers for the agent tests: the simulator, the agent process, an MQTT subscriber."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.framer import FramerType

from firmware_sim.control import field as control_field
from protocol.messages import Event, EventMessage, UsageMessage, UsageRecord
from protocol.signing import new_key, signed
from tests.support import free_port, stop, wait_for

CONTROL = 0x9000


@dataclass
class Proc:
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_sim(args: list[str], log: Path, python: str = sys.executable) -> Proc:
    """``smsa-meter-sim`` with ``args`` (run by ``python``); returns once it prints its ready
    line."""
    out = log.with_suffix(".out")
    with out.open("wb") as stdout, log.open("wb") as stderr:
        proc = subprocess.Popen(
            [python, "-m", "firmware_sim", "--log-level", "WARNING", *args],
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_for(lambda: "\n" in out.read_text() or proc.poll() is not None, timeout=15)
    except AssertionError:
        stop(proc)
        raise
    if proc.poll() is not None:
        raise RuntimeError(f"simulator exited with {proc.returncode}: {log.read_text()}")
    return Proc(proc, log)


def agent_config(
    tmp: Path,
    broker_port: int,
    bus: dict[str, Any],
    meters: list[dict[str, Any]],
    *,
    gateway: str = "gw-t",
    poll: float = 0.1,
    report: float = 1.0,
    key: str | None = None,
    db: Path | None = None,
) -> Path:
    """Write an agent TOML file for the test and return its path."""
    lines = [
        f'gateway_id = "{gateway}"',
        "[mqtt]",
        f'url = "mqtt://127.0.0.1:{broker_port}"',
        "[security]",
        f'command_key = "{key or new_key()}"',
        "[storage]",
        f'path = "{db or tmp / "agent.db"}"',
        "[timing]",
        f"poll_interval_s = {poll}",
        f"report_interval_s = {report}",
        "[status]",
        f'path = "{tmp / "status.json"}"',
        "interval_s = 0.2",
        "[tokens]",  # a port of its own: agents of tests running in parallel do not collide
        f"port = {free_port()}",
        "[[buses]]",
        *(f"{k} = {json.dumps(v)}" for k, v in bus.items()),
    ]
    for meter in meters:
        lines += ["[[meters]]", *(f"{k} = {json.dumps(v)}" for k, v in meter.items())]
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def tcp_bus(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "bus0",
        "transport": "tcp",
        "host": "127.0.0.1",
        "port": port,
        "timeout_s": 0.2,
        "retries": 1,
        "backoff_s": 0.2,
        "backoff_max_s": 1.0,
        **extra,
    }


def rtu_bus(device: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "bus0",
        "transport": "rtu",
        "device": device,
        "baudrate": 9600,
        "timeout_s": 0.3,
        "retries": 1,
        "backoff_s": 0.2,
        "backoff_max_s": 1.0,
        **extra,
    }


def meters(units: list[int], model: str = "dds238-2-zn-sr") -> list[dict[str, Any]]:
    return [{"id": f"m{u}", "bus": "bus0", "unit": u, "model": model} for u in units]


def start_agent(config: Path, log: Path, *extra: str, python: str = sys.executable) -> Proc:
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [
                python,
                "-m",
                "agent",
                "--config",
                str(config),
                "--log-level",
                "DEBUG",
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return Proc(proc, log)


class Procs:
    """The processes one test starts (logs under its ``tmp`` folder), stopped newest first."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Proc] = []

    def append(self, proc: Proc) -> Proc:
        self.started.append(proc)
        return proc

    def sim(self, args: list[str], log: str = "sim.log") -> Proc:
        return self.append(start_sim(args, self.tmp / log))

    def agent(self, config: Path) -> Proc:
        return self.append(start_agent(config, self.tmp / "agent.log"))

    def stop_all(self) -> None:
        for p in reversed(self.started):
            stop(p.proc)


def meter_args(loads: Mapping[int, int]) -> list[str]:
    """``--meter UNIT:WATTS`` for each simulated meter."""
    return [a for unit, watts in loads.items() for a in ("--meter", f"{unit}:{watts}")]


def tcp_sim_args(port: int, loads: Mapping[int, int], *extra: str) -> list[str]:
    """Simulator options: Modbus TCP on 127.0.0.1:``port``, a meter per unit of ``loads``."""
    return ["--tcp", f"127.0.0.1:{port}", *extra, *meter_args(loads)]


def serial_sim_args(device: str, loads: Mapping[int, int], *extra: str) -> list[str]:
    """Simulator options: Modbus RTU on ``device``, a meter per unit of ``loads``."""
    return ["--serial", device, *extra, *meter_args(loads)]


@contextmanager
def modbus_tcp(port: int) -> Iterator[ModbusTcpClient]:
    """A connected Modbus TCP client of the simulator on ``port``, closed on exit."""
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    assert client.connect()
    try:
        yield client
    finally:
        client.close()


@contextmanager
def modbus_rtu(device: str) -> Iterator[ModbusSerialClient]:
    """A connected Modbus RTU client on the serial ``device``, closed on exit."""
    client = ModbusSerialClient(device, framer=FramerType.RTU, baudrate=9600, timeout=1)
    assert client.connect()
    try:
        yield client
    finally:
        client.close()


def kill9(proc: Proc) -> None:
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def meter_status(path: Path, meter: str) -> dict[str, Any]:
    data = read_status(path) or {}
    return dict(data.get("meters", {}).get(meter, {}))


@dataclass
class Collector:
    """A paho subscriber on the real broker gathering usage records and events."""

    port: int
    gateway: str = "gw-t"
    records: list[UsageRecord] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    persistent: bool = False

    def __post_init__(self) -> None:
        # persistent: a QoS 1 session the broker keeps (and persists) while we are away
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"t-{id(self)}",
            clean_session=not self.persistent,
        )
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_connect = lambda *a: self._subscribe()
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        wait_for(self._subscribed.is_set, timeout=10)

    def _subscribe(self) -> None:
        self.client.subscribe(
            [(f"smsa/v1/gw/{self.gateway}/usage", 1), (f"smsa/v1/gw/{self.gateway}/events", 1)]
        )

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            if msg.topic.endswith("/usage"):
                self.records.extend(UsageMessage.model_validate_json(msg.payload).records)
            else:
                self.events.extend(EventMessage.model_validate_json(msg.payload).events)

    def of(self, meter: str) -> list[UsageRecord]:
        with self.lock:
            return [r for r in self.records if r.meter == meter]

    def events_of(self, kind: str, meter: str | None = None) -> list[Event]:
        with self.lock:
            return [
                e for e in self.events if e.kind == kind and (meter is None or e.meter == meter)
            ]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unique_by_seq(records: list[UsageRecord]) -> dict[int, UsageRecord]:
    """Records by seq; fails if one seq ever carried two different records."""
    out: dict[int, UsageRecord] = {}
    for r in records:
        if r.seq in out:
            assert out[r.seq] == r, f"seq {r.seq} carried two records: {out[r.seq]} and {r}"
        out[r.seq] = r
    return out


# -- steering the simulator through its control block ------------------------------------------


def set_control(
    client: ModbusTcpClient | ModbusSerialClient, unit: int, name: str, value: int
) -> None:
    f = control_field(name)
    words = [(value >> (16 * (f.words - 1 - i))) & 0xFFFF for i in range(f.words)]
    resp = client.write_registers(f.address, words, device_id=unit)
    assert not resp.isError(), f"control {name}={value} on unit {unit}: {resp}"


def energy_register_wh(client: ModbusTcpClient | ModbusSerialClient, unit: int) -> int:
    """The DDS238 import register (0x000A, u32, 1/100 kWh) in Wh."""
    resp = client.read_holding_registers(0x000A, count=2, device_id=unit)
    assert not resp.isError(), resp
    hi, lo = resp.registers
    return ((hi << 16) | lo) * 10


def command(
    key: str,
    meter: str,
    action: str,
    *,
    expires_in_s: float = 300,
    params: dict[str, Any] | None = None,
    cid: str | None = None,
) -> bytes:
    """A hub command signed with ``key`` (HMAC over the canonical payload)."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "v": 1,
        "id": cid or uuid.uuid4().hex,
        "meter": meter,
        "action": action,
        "issued_at": (now - timedelta(seconds=1)).isoformat(),
        "expires_at": (now + timedelta(seconds=expires_in_s)).isoformat(),
        "reason": f"test {action}",
        "params": params or {},
    }
    return json.dumps(signed(body, key)).encode()


def publish(port: int, topic: str, payload: bytes) -> None:
    """Publish one QoS 1 message and wait for the broker's PUBACK."""
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def relay_register(client: ModbusTcpClient | ModbusSerialClient, unit: int) -> int:
    """The DDS238 relay register (0x001A): 1 on, 0 off."""
    resp = client.read_holding_registers(0x001A, count=1, device_id=unit)
    assert not resp.isError(), resp
    return int(resp.registers[0])
