"""The parent's handle on the MQTT pump process (``hub.ingest.pump``).

``PumpLink.start()`` runs ``python -m hub.ingest.pump`` with one end of a socket pair; a reader
thread hands each received chunk to ``on_messages`` and connection changes to ``on_state``.
``ack``, ``publish`` and ``stop`` are safe from any thread. If the pump process dies while the
link is open it is started again with a higher generation base, so nothing received by the dead
one is ever acknowledged by the new one (the broker redelivers it).
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

GENERATIONS_PER_PUMP = 1_000_000
Chunk = list[tuple[str, bytes, float, int, int, int]]


@dataclass(frozen=True)
class PumpConfig:
    url: str
    client_id: str
    v5: bool
    session_expiry_s: int
    receive_maximum: int
    generation_base: int = 0  # this pump's generations start above it (one base per restart)
    log_level: str = "WARNING"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> PumpConfig:
        return cls(**json.loads(text))


class PumpLink:
    def __init__(
        self,
        cfg: PumpConfig,
        on_messages: Callable[[Chunk], None],
        on_state: Callable[[str, tuple[Any, ...]], None],
    ) -> None:
        self.cfg = cfg
        self._on_messages = on_messages
        self._on_state = on_state
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._stopping = threading.Event()
        self._restarts = 0

    @property
    def pid(self) -> int | None:
        """The pump process's pid (for health checks and tests), None when not started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        self._stopping.clear()
        self._spawn()

    def _spawn(self) -> None:
        mine, theirs = socket.socketpair()
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel())
        base = self._restarts * GENERATIONS_PER_PUMP
        cfg = replace(self.cfg, generation_base=base, log_level=level)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hub.ingest.pump", "--fd", str(theirs.fileno()),
             cfg.to_json()],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        theirs.close()
        self._conn = Connection(mine.detach())
        self._reader = threading.Thread(target=self._read, args=(self._conn,),
                                        name="smsa-ingest-link", daemon=True)  # fmt: skip
        self._reader.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._send(("stop",))
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._conn is not None:
            self._conn.close()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)
        self._proc = self._conn = self._reader = None

    def ack(self, generation: int, items: list[tuple[int, int]]) -> None:
        if items:
            self._send(("ack", generation, items))

    def publish(self, topic: str, payload: bytes) -> bool:
        """Hand ``topic``/``payload`` to the pump (QoS 1); False when no pump is running."""
        return self._send(("publish", topic, payload))

    def _send(self, message: tuple[Any, ...]) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send(message)
        except (OSError, ValueError):
            return False  # the pump died: the reader restarts it
        return True

    def _read(self, conn: Connection) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            if message[0] == "msgs":
                self._on_messages(message[1])
            else:
                self._on_state(message[0], message[1:])
        self._on_state("down", ("pump process ended",))
        if self._stopping.is_set():
            return
        proc = self._proc
        code = proc.wait() if proc is not None else None
        log.error("ingest: the MQTT pump process ended (exit %s); starting it again", code)
        self._restarts += 1
        self._stopping.wait(1.0)
        if not self._stopping.is_set():
            self._spawn()
