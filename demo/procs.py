"""Child processes of the demo: started with their logs in one folder, all stopped at the end."""

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class DemoError(Exception):
    """The demo cannot go on; the message is one line for the terminal."""


class Processes:
    """Starts console scripts of this installation and guarantees they are all stopped."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, args: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        exe = _script(args[0])
        out = (self.logs / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [exe, *args[1:]],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        out.close()
        self._procs.append((name, proc))
        log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(args))
        return proc

    def wait_ready(self, name: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        proc = self.get(name)
        deadline = time.monotonic() + timeout
        while not check():
            if proc.poll() is not None:
                raise DemoError(f"{name} exited with {proc.returncode}: {self.tail(name)}")
            if time.monotonic() > deadline:
                raise DemoError(f"{name} not ready within {timeout:.0f} s: {self.tail(name)}")
            time.sleep(0.1)

    def get(self, name: str) -> subprocess.Popen[bytes]:
        """The process last started as ``name``."""
        for known, proc in reversed(self._procs):
            if known == name:
                return proc
        raise KeyError(name)

    def stop(self, name: str, *, kill: bool = False) -> None:
        """Stop the process ``name`` (SIGTERM, or SIGKILL with ``kill``) and wait for it."""
        proc = self.get(name)
        if proc.poll() is None:
            _signal(proc, signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(15)

    def failed(self) -> list[str]:
        return [name for name, proc in self._procs if proc.poll() is not None]

    def tail(self, name: str, lines: int = 3) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return " | ".join(text[-lines:]) or "(no output)"

    def stop_all(self) -> None:
        for _name, proc in reversed(self._procs):
            if proc.poll() is None:
                _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _name, proc in reversed(self._procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait(5)
        self._procs.clear()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return


def _script(name: str) -> str:
    """A console script of this installation: beside the running Python first, then on PATH."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise DemoError(f"{name} is not installed (run `pip install -e .` or `make demo`)")
    return found
