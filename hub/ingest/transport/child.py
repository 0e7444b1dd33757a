"""A helper process of the ingest service, and the socket the two talk over.

``ChildLink.start()`` runs ``python -m MODULE --fd N CONFIG`` with one end of a socket pair
(``multiprocessing.connection.Connection``: pickled messages of
``hub.ingest.transport.messages``); a reader thread hands each message to ``on_message``.
``send`` and ``stop`` are safe from any thread. If the child dies while the link is open,
``on_exit`` is called, the child is started again with ``config(restarts)``, then
``on_restart`` is called.
A child reads end-of-file when its parent goes away (even by kill -9) and exits by itself
(``serve_parent``), so a restarted hub never finds orphans at work.
"""

from __future__ import annotations

import argparse
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from hub.ingest.transport.messages import Stop

log = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0


class ChildLink:
    def __init__(
        self,
        module: str,
        config: Callable[[int], str],
        on_message: Callable[[Any], None],
        on_exit: Callable[[int | None], None],
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.module = module
        self._config = config
        self._on_message = on_message
        self._on_exit = on_exit
        self._on_restart = on_restart
        self._conn: Connection | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._stopping = threading.Event()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The child's pid (for health checks and tests), None when not started."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        self._stopping.clear()
        self._spawn()

    def _spawn(self) -> None:
        mine, theirs = socket.socketpair()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--fd", str(theirs.fileno()),
             self._config(self.restarts)],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
            start_new_session=True,  # a terminal's Ctrl-C reaches the hub only, not its children
        )  # fmt: skip
        theirs.close()
        self._conn = Connection(mine.detach())
        self._reader = threading.Thread(target=self._read, args=(self._conn, self._proc),
                                        name=f"link-{self.module}", daemon=True)  # fmt: skip
        self._reader.start()

    def send(self, message: object) -> bool:
        """Send ``message``; False when the child is not running."""
        return self.send_bytes(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))

    def send_bytes(self, message: bytes) -> bool:
        """Send ``message``, already pickled; False when the child is not running."""
        conn = self._conn
        if conn is None:
            return False
        try:
            with self._send_lock:
                conn.send_bytes(message)
        except (OSError, ValueError):
            return False  # the child died: the reader starts it again
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the child to stop (``Stop()``), wait for it, then for its last messages."""
        self._stopping.set()
        self.send(Stop())
        proc = self._proc
        if proc is not None:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in %.0f s; killed", self.module, timeout)
                proc.kill()
                proc.wait()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout)  # everything the child sent is handled
        if self._conn is not None:
            self._conn.close()
        self._proc = self._conn = self._reader = None

    def _read(self, conn: Connection, proc: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            self._on_message(message)
        if self._stopping.is_set():
            return
        code = proc.wait()
        log.error("%s ended (exit %s); starting it again", self.module, code)
        self._on_exit(code)
        self.restarts += 1
        if not self._stopping.wait(RESTART_DELAY_S):
            self._spawn()
            if self._on_restart is not None:
                self._on_restart()

    def restart(self) -> None:
        """Stop the child and start a new one (counted as a restart: a new ``config``)."""
        self.stop()
        self.restarts += 1
        self.start()


def start_child(prog: str, argv: list[str] | None) -> tuple[str, Connection]:
    """In a child: parse ``--fd N CONFIG``; returns the configuration text and the parent's
    connection. SIGINT and SIGTERM are ignored: a service manager's SIGTERM reaches every
    process of the service, and the hub stops its children itself, in order (each settler
    reports the batch in hand, then the pump acknowledges it and leaves)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--fd", type=int, required=True, help="the parent's socket")
    parser.add_argument("config", help="the child's configuration as JSON")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return args.config, Connection(args.fd)


def log_to_stderr(level: str) -> None:
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip


def exit_child(code: int) -> None:
    """Leave at once: the child's threads are stopped; nothing else is worth waiting for."""
    sys.stdout.flush()
    os._exit(code)


def serve_parent(conn: Connection, handle: Callable[[Any], bool]) -> None:
    """In a child: pass each message from the parent to ``handle`` until it returns False, the
    parent sends ``Stop()`` or goes away."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if isinstance(message, Stop) or not handle(message):
            return
