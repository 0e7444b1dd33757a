"""Helpers shared by the tests: free ports, waiting on conditions, real peer processes."""

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate a child process, killing it if it does not exit in time."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def start_mosquitto(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """A real Mosquitto broker on 127.0.0.1:``port`` with persistence in ``tmp_path``."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    conf = tmp_path / f"mosquitto-{port}.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        # Mosquitto 2 drops root for user "mosquitto", which cannot write a root-owned tmp dir:
        # run as the current user so persistence (sessions, queued messages) survives a restart.
        f"user {getpass.getuser()}\n"
        "persistence true\n"
        f"persistence_location {tmp_path}/\n"
        "max_queued_messages 0\n"
        "log_dest stderr\n"
        "log_type error\n"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stderr=subprocess.DEVNULL)
    wait_for(lambda: port_open(port) or proc.poll() is not None, timeout=10)
    if proc.poll() is not None:
        raise RuntimeError(f"mosquitto exited with {proc.returncode}")
    return proc
