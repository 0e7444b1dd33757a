"""A pair of connected pseudo-terminals from socat: a serial line without hardware.

``with socat_pair() as pair:`` runs ``socat -d -d pty,raw,echo=0 pty,raw,echo=0``; the server
opens ``pair.server`` (e.g. ``smsa-meter-sim --serial PATH``), a client opens ``pair.client``.
A pty ignores the baud rate: use the simulator's ``--line-timing`` for real bus timing.
"""

import re
import shutil
import subprocess
import tempfile
import time

from firmware_sim.errors import SocatError
from firmware_sim.process import terminate

_PTY_LINE = re.compile(rb"PTY is (\S+)")
_READY = b"starting data transfer loop"


class SocatPair:
    """Two linked ptys; ``server`` and ``client`` are their paths (symmetric, named for use)."""

    def __init__(self, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.server = ""
        self.client = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())

    @property
    def paths(self) -> tuple[str, str]:
        return self.server, self.client

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> "SocatPair":
        exe = shutil.which("socat")
        if exe is None:
            raise SocatError("socat is not installed (apt-get install socat)")
        self._proc = subprocess.Popen(
            [exe, "-d", "-d", "pty,raw,echo=0", "pty,raw,echo=0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        deadline = time.monotonic() + self.timeout
        while True:
            self._log.seek(0)
            text = self._log.read()
            paths = _PTY_LINE.findall(text)
            if len(paths) >= 2 and _READY in text:
                self.server, self.client = paths[0].decode(), paths[1].decode()
                return self
            if self._proc.poll() is not None:
                self.close()
                raise SocatError(f"socat exited with {self._proc.returncode}: {_last(text)}")
            if time.monotonic() > deadline:
                self.close()
                raise SocatError(f"socat did not report two ptys within {self.timeout} s")
            time.sleep(0.01)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            terminate(proc)
        self._log.close()

    def __enter__(self) -> "SocatPair":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def socat_pair(timeout: float = 5.0) -> SocatPair:
    """A context manager: ``with socat_pair() as pair: ... pair.server, pair.client``."""
    return SocatPair(timeout)


def _last(text: bytes) -> str:
    lines = text.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else "no output"
