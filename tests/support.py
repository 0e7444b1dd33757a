"""Helpers shared by the tests: free ports, waiting on conditions, real peer processes."""

import socket
import time
from collections.abc import Callable
from typing import TypeVar

from demo.broker import start_mosquitto
from demo.procs import free_port
from firmware_sim.process import terminate as stop

__all__ = ["free_port", "port_open", "start_mosquitto", "stop", "wait_for"]

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
