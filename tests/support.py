"""Helpers shared by the tests: free ports, waiting on conditions, real peer processes."""

import os
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from demo.broker import mosquitto_path, start_mosquitto
from demo.procs import free_port
from firmware_sim.process import terminate as stop

__all__ = [
    "free_port",
    "mosquitto_config",
    "port_open",
    "run_mosquitto",
    "start_mosquitto",
    "stop",
    "wait_for",
]

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02) -> T:
    """Poll ``check`` until it returns something truthy; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {check}")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def mosquitto_config(out: Path, db: str, hub_url: str, *extra: str) -> Path:
    """``smsa-hub mosquitto-config --out OUT --db DB --mqtt HUB_URL EXTRA...`` in this process;
    the path of the mosquitto.conf it wrote."""
    from hub.__main__ import main  # noqa: PLC0415 (the hub's imports only where needed)

    args = ["mosquitto-config", "--out", str(out), "--db", db, "--mqtt", hub_url, *extra]
    code = main(args)
    assert code == 0, f"smsa-hub {' '.join(args)} exited {code}"
    return out / "mosquitto.conf"


def run_mosquitto(
    conf_text: str, folder: Path, port: int, *, log_types: Sequence[str] = ("error",)
) -> subprocess.Popen[bytes]:
    """Mosquitto on ``conf_text`` plus what the Debian main configuration would add
    (persistence in ``folder``, logging to ``folder``/mosquitto.log); returns once ``port``
    listens. As root, Mosquitto would drop to user "mosquitto", which cannot read the test's
    files: it stays root."""
    extra = [f"persistence_location {folder}/", f"log_dest file {folder}/mosquitto.log"]
    extra += [f"log_type {kind}" for kind in log_types]
    if os.geteuid() == 0:
        extra.append("user root")
    conf = folder / "run.conf"
    conf.write_text(conf_text + "\n" + "\n".join(extra) + "\n")
    exe = mosquitto_path()
    assert exe is not None, "mosquitto is not installed"
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: port_open(port) or proc.poll() is not None, timeout=10)
    except AssertionError:
        stop(proc)
        raise
    if proc.poll() is not None:
        log = folder / "mosquitto.log"
        raise RuntimeError(f"mosquitto exited: {log.read_text() if log.exists() else ''}")
    return proc
