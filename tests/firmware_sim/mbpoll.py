"""Running mbpoll (libmodbus) against the simulator and parsing what it prints."""

import shutil
import subprocess
from dataclasses import dataclass
from decimal import Decimal

from hardware.regmap import MeterModel, Register

_TABLE = {"coil": "0", "discrete": "1", "input": "3", "holding": "4"}
_SUFFIX = {"u32": ":int", "s32": ":int", "float32": ":float"}


@dataclass(frozen=True)
class Target:
    """How mbpoll reaches the simulator: TCP port or RTU device."""

    port: int | None = None
    device: str | None = None

    def args(self) -> list[str]:
        if self.port is not None:
            return ["-m", "tcp", "-p", str(self.port)]
        return ["-m", "rtu", "-b", "9600", "-P", "none"]

    @property
    def where(self) -> str:
        return "127.0.0.1" if self.port is not None else str(self.device)


def available() -> bool:
    return shutil.which("mbpoll") is not None


def run(
    target: Target, unit: int, *options: str, values: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """One mbpoll poll (or write, when ``values`` are given) with 0-based addresses."""
    cmd = ["mbpoll", *target.args(), "-a", str(unit), "-0", "-1", "-o", "1", *options, target.where]
    if values:
        cmd += ["--", *(str(v) for v in values)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)


def read(target: Target, unit: int, *options: str) -> list[str]:
    """The values printed for a read (``[ref]: value`` lines), as text."""
    result = run(target, unit, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("[")]
    return [line.split(":", 1)[1].strip() for line in lines]


def read_register(target: Target, model: MeterModel, reg: Register, unit: int) -> Decimal:
    """``reg``'s engineering value as mbpoll reads it (``-B`` for 32-bit types high word first;
    mbpoll's default is low word first)."""
    table = _TABLE[reg.function] + _SUFFIX.get(reg.type, "")
    options = ["-r", str(reg.address), "-t", table]
    if reg.type in _SUFFIX and model.order_of(reg) == "big":
        options.append("-B")
    (text,) = read(target, unit, *options)
    if reg.type == "s16" and "(" in text:  # mbpoll shows "65535 (-1)" for negative words
        text = text.split("(")[1].rstrip(")")
    raw = Decimal(text.split()[0])
    return raw * reg.scale
