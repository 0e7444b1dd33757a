"""Operations: sd_notify READY/WATCHDOG from a real datagram socket, the status command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.sdnotify import Notifier
from tests.agent.helpers import Proc, Procs, agent_config, meters, tcp_bus, tcp_sim_args
from tests.conftest import Broker
from tests.support import free_port, stop, wait_for


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.1)
    yield sock
    sock.close()


def _received(sock: socket.socket, into: list[str]) -> list[str]:
    """Everything queued on the socket so far, appended to ``into``."""
    while True:
        try:
            into.append(sock.recv(1024).decode())
        except TimeoutError:
            return into


def test_notifier_without_systemd_does_nothing() -> None:
    assert Notifier("").notify("READY=1") is False


def test_notifier_abstract_and_path(notify_socket: socket.socket, tmp_path: Path) -> None:
    assert Notifier(str(tmp_path / "notify.sock")).notify("WATCHDOG=1")
    assert notify_socket.recv(100) == b"WATCHDOG=1"
    assert Notifier(str(tmp_path / "missing.sock")).notify("READY=1") is False


@pytest.mark.slow
def test_ready_watchdog_and_status_command(
    tmp_path: Path, mosquitto: Broker, procs: Procs, notify_socket: socket.socket
) -> None:
    port = free_port()
    procs.sim(tcp_sim_args(port, {1: 1000, 2: 1000}))
    config = agent_config(tmp_path, mosquitto.port, tcp_bus(port), meters([1, 2, 3]))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    log = tmp_path / "agent.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--config", str(config), "--log-format", "json"],
            stderr=err,
            env=env,
        )
    procs.append(Proc(proc, log))
    got: list[str] = []
    wait_for(lambda: "READY=1" in _received(notify_socket, got), timeout=20)
    wait_for(lambda: "WATCHDOG=1" in _received(notify_socket, got), timeout=20)

    def status() -> dict[str, Any] | None:
        out = subprocess.run(
            [sys.executable, "-m", "agent", "--config", str(config), "status"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if out.returncode != 0:
            return None
        data = json.loads(out.stdout)
        m3 = data["meters"]["m3"]  # no such unit on the sim: failing, counted
        ok = data["meters"]["m1"]["state"] == "ok" and m3["state"] == "failing"
        return data if ok and m3["counters"]["errors"] >= 1 else None

    data = wait_for(status, timeout=20)
    assert data is not None
    assert data["outbox_depth"] >= 0 and data["buses"]["bus0"]["alive"]
    stop(proc)
    assert proc.returncode == 0
    assert "STOPPING=1" in _received(notify_socket, got)
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every log line is a JSON object
    errors = [r for r in records if r["level"] == "ERROR"]
    assert len(errors) == 1 and "m3" in errors[0]["msg"]  # once, then DEBUG
