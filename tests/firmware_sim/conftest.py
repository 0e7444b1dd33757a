"""Fixtures for firmware_sim tests: the simulator as a real subprocess, a socat pty pair."""

import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from firmware_sim.process import SimProcess
from firmware_sim.pty import SocatPair, socat_pair
from tests.support import free_port


@dataclass
class Sim:
    """A running ``smsa-meter-sim``; ``device`` is the pty end a client opens."""

    process: SimProcess
    port: int | None = None
    device: str | None = None

    @property
    def ready(self) -> str:
        return self.process.ready

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        assert self.process.proc is not None
        return self.process.proc


StartSim = Callable[..., Sim]


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


def launch(args: list[str], port: int | None = None, device: str | None = None) -> Sim:
    """Start the simulator with ``args`` and wait for its ready line."""
    process = SimProcess(["--log-level", "WARNING", *args]).start()
    return Sim(process, port if port is not None else process.port or None, device)


@pytest.fixture
def sim_tcp() -> Iterator[StartSim]:
    """A factory: ``sim_tcp("--meter", "1:1000", ...)`` starts a simulator on a free port."""
    started: list[Sim] = []

    def start(*args: str) -> Sim:
        port = free_port()
        sim = launch(["--tcp", f"127.0.0.1:{port}", *args], port=port)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        shutdown(sim)


def shutdown(sim: Sim) -> None:
    """Stop a simulator and close its pipes."""
    sim.process.stop()


@pytest.fixture
def pty_pair() -> Iterator[SocatPair]:
    with socat_pair() as pair:
        yield pair


@pytest.fixture
def sim_serial(pty_pair: SocatPair) -> Iterator[StartSim]:
    """A factory: ``sim_serial("--meter", "1")`` serves RTU on ``pty_pair.server``."""
    started: list[Sim] = []

    def start(*args: str) -> Sim:
        sim = launch(["--serial", pty_pair.server, *args], device=pty_pair.client)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        shutdown(sim)
