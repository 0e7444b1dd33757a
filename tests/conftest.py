"""Fixtures shared by every test package: real brokers on ports the test picks."""

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port, start_mosquitto, stop


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    tmp_path: Path

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def restart(self) -> None:
        """Stop the broker (if running) and start it again on the same port and store."""
        stop(self.proc)
        self.proc = start_mosquitto(self.tmp_path, self.port)

    def stop(self) -> None:
        stop(self.proc)

    def crash(self) -> None:
        """Kill the broker (SIGKILL) and lose its store: it comes back with no sessions and no
        queued messages, as after a crash without persistence or a failover to a fresh node."""
        self.proc.kill()
        self.proc.wait(10)
        (self.tmp_path / "mosquitto.db").unlink(missing_ok=True)

    def start(self) -> None:
        self.proc = start_mosquitto(self.tmp_path, self.port)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """A real Mosquitto broker on 127.0.0.1 and a free port, stopped after the test."""
    port = free_port()
    broker = Broker("127.0.0.1", port, start_mosquitto(tmp_path, port), tmp_path)
    try:
        yield broker
    finally:
        broker.stop()
