"""Errors raised while loading or using a register map."""

from pathlib import Path


class RegisterMapError(Exception):
    """A register map that cannot be used; names the file and, where known, the register."""

    def __init__(self, path: Path | str, reason: str, register: str | None = None) -> None:
        self.path = str(path)
        self.register = register
        self.reason = reason
        where = f"{self.path}: register {register!r}" if register else self.path
        super().__init__(f"{where}: {reason}")
