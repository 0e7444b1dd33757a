"""The simulator as a child process, for tests and demos of other packages.

    with sim_process("--tcp", "127.0.0.1:0", "--meter", "1:1000") as sim:
        client = ModbusTcpClient(sim.host, port=sim.port)
        ...

It starts ``python -m firmware_sim`` with the given options, waits for the ready line
(``listening tcp 127.0.0.1:PORT units 1``, so port 0 is safe: the bound port is read back),
and stops the process (SIGTERM, then SIGKILL) on exit.
"""

import os
import selectors
import subprocess
import sys
import time
from typing import IO

from firmware_sim.errors import SimError


class SimProcessError(SimError):
    """The simulator exited or stayed silent instead of reporting that it listens."""


def terminate(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stop a child process if it still runs: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)


class SimProcess:
    def __init__(
        self, args: list[str], *, timeout: float = 15.0, stderr: int | IO[bytes] | None = None
    ) -> None:
        self.args = list(args)
        self.timeout = timeout
        self.stderr = stderr
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = ""
        self.host = ""
        self.port = 0
        self.device = ""
        self.units: list[int] = []

    def start(self) -> "SimProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_sim", *self.args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        try:
            self.ready = self._ready_line()
        except BaseException:
            self.stop()
            raise
        words = self.ready.split()  # listening tcp HOST:PORT units 1,2 | listening serial DEV ...
        if words[1] == "tcp":
            host, _, port = words[2].rpartition(":")
            self.host, self.port = host, int(port)
        else:
            self.device = words[2]
        self.units = [int(u) for u in words[4].split(",")]
        return self

    def _ready_line(self) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        out = self.proc.stdout
        buffer = b""
        deadline = time.monotonic() + self.timeout
        with selectors.DefaultSelector() as selector:
            selector.register(out, selectors.EVENT_READ)
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SimProcessError(f"no ready line within {self.timeout} s")
                if selector.select(left):
                    chunk = os.read(out.fileno(), 4096)
                    if not chunk:
                        code = self.proc.wait(5)
                        raise SimProcessError(f"smsa-meter-sim exited with {code}")
                    buffer += chunk
        line = buffer.split(b"\n", 1)[0].decode()
        if not line.startswith("listening "):
            raise SimProcessError(f"unexpected output: {line!r}")
        return line

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> int | None:
        """Stop the simulator; its exit code (None if it was never started)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        terminate(proc)
        if proc.stdout:
            proc.stdout.close()
        return proc.returncode

    def __enter__(self) -> "SimProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sim_process(*args: str, timeout: float = 15.0) -> SimProcess:
    """A context manager running ``smsa-meter-sim`` with ``args`` (see the module doc)."""
    return SimProcess(list(args), timeout=timeout)
