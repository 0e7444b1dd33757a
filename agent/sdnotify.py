"""systemd notification (``Type=notify``): READY=1, WATCHDOG=1, STOPPING=1, without a dependency.

Writes one datagram to the socket named by ``NOTIFY_SOCKET`` (a path, or ``@name`` for the
abstract namespace); does nothing when the variable is unset (not run by systemd).
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        self.address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``READY=1``); False when not under systemd or the send failed."""
        if not self.address:
            return False
        addr = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.connect(addr)
                sock.sendall(state.encode())
        except OSError:
            return False
        self.sent += 1
        return True

    def watchdog_interval_s(self) -> float | None:
        """Half of ``WATCHDOG_USEC`` (how often to feed the watchdog), if systemd set one."""
        usec = os.environ.get("WATCHDOG_USEC", "")
        return int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 else None
