"""MQTT brokers started by the demo and the tests: amqtt in this process, or a Mosquitto child."""

import asyncio
import getpass
import logging
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """amqtt on 127.0.0.1:``port`` in a thread of its own; ``start()`` returns once it listens."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded MQTT broker did not start in time")
        if self._error is not None:
            raise RuntimeError(f"embedded MQTT broker failed: {self._error}") from self._error
        log.info("embedded MQTT broker listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the broker down and end its thread. A task of the broker that does not end when
        cancelled would hold the shutdown for ever (once in CI, 2026-12-06, after the demo had
        told its whole story): after ``timeout`` the loop is stopped with such tasks still
        open, named in a warning, so that the program using the broker ends all the same."""
        if self._broker is None or not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(self._broker), self._loop)
        try:
            future.result(timeout=timeout)
        except TimeoutError:
            open_ = sorted({getattr(t.get_coro(), "__qualname__", t.get_name())
                            for t in asyncio.all_tasks(self._loop)})  # fmt: skip
            log.warning("embedded MQTT broker did not shut down within %g s; stopped with tasks "
                        "still open: %s", timeout, ", ".join(open_))  # fmt: skip
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=timeout)

    @staticmethod
    async def _shutdown(broker: Broker) -> None:
        await broker.shutdown()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True, "plugins": ["auth_anonymous"]},
            "topic-check": {"enabled": False},
        }

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._broker = Broker(self._config(), loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread, which raises it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def mosquitto_path() -> str | None:
    """The Mosquitto executable, if this machine has one."""
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
    )


def start_mosquitto(folder: Path, port: int, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Mosquitto on 127.0.0.1:``port``, persistence in ``folder``; returns once it listens.

    Queues are unbounded (``max_queued_messages 0``) so a subscriber with a persistent session
    loses nothing while it is away; see hardware/mosquitto/smsa.conf for production bounds.
    """
    exe = mosquitto_path()
    if exe is None:
        raise RuntimeError("mosquitto is not installed")
    conf = folder / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        # Mosquitto 2 drops root for user "mosquitto", which cannot write a root-owned folder:
        # run as the current user so persistence (sessions, queued messages) survives a restart.
        f"user {getpass.getuser()}\n"
        "persistence true\n"
        f"persistence_location {folder}/\n"
        "max_queued_messages 0\n"
        "log_dest stderr\n"
        "log_type error\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not _listening("127.0.0.1", port):
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"mosquitto did not listen on port {port} within {timeout} s")
        time.sleep(0.02)
    return proc


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False
