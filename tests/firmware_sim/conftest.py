"""Fixtures for firmware_sim tests: the simulator as a real subprocess, a socat pty pair."""

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from firmware_sim.pty import SocatPair, socat_pair
from tests.support import free_port, stop, wait_for


@dataclass
class Sim:
    """A running ``smsa-meter-sim``; ``ready`` is its first stdout line."""

    proc: subprocess.Popen[bytes]
    port: int | None = None
    device: str | None = None
    ready: str = ""
    _out: bytearray = field(default_factory=bytearray)

    def read_stdout(self) -> str:
        assert self.proc.stdout is not None
        try:
            chunk = os.read(self.proc.stdout.fileno(), 65536)
        except BlockingIOError:
            chunk = b""
        self._out.extend(chunk)
        return self._out.decode(errors="replace")


StartSim = Callable[..., Sim]


def launch(args: list[str], port: int | None = None, device: str | None = None) -> Sim:
    """Start the simulator with ``args`` and wait for its ready line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "--log-level", "WARNING", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    sim = Sim(proc, port, device)
    try:
        text = wait_for(
            lambda: ("\n" in sim.read_stdout() and sim.read_stdout()) or proc.poll() is not None,
            timeout=15,
        )
    except AssertionError:
        stop(proc)
        raise
    if proc.poll() is not None:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise RuntimeError(f"simulator exited with {proc.returncode}: {err}")
    sim.ready = str(text).splitlines()[0]
    return sim


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
    stop(sim.proc)
    for pipe in (sim.proc.stdout, sim.proc.stderr):
        if pipe:
            pipe.close()


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
