"""Errors of the simulator: one root, :class:`SimError`, with typed subclasses."""


class SimError(Exception):
    """Root of every error firmware_sim raises on purpose."""


class ConfigError(SimError):
    """A bad option or value; ``option`` names what was wrong."""

    def __init__(self, option: str, reason: str) -> None:
        self.option = option
        self.reason = reason
        super().__init__(f"{option}: {reason}")


class ListenError(SimError):
    """The server cannot listen where it was asked to (port in use, no such device)."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(f"cannot listen on {where}: {reason}")


class SocatError(SimError):
    """socat is missing, failed to start, or did not report its two pty paths."""
