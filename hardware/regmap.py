"""Load and validate register maps (``hardware/registers/<model>.toml``).

A map is data: every register's address, function, type, word order, scale and unit, plus the
relay mechanism where the model has one. :func:`load_model` returns a frozen, validated
:class:`MeterModel`; anything wrong raises :class:`RegisterMapError` naming the file and register.

Maps are looked up in the shipped ``hardware/registers`` and in any extra directories the caller
names (the agent's ``register_path``, the simulator's ``--register-path``). A model name means
one file: a name found in two directories is refused rather than one silently shadowing the
other.

The energy register gives the service's base unit as an integer: Wh for electricity, litres for
water, and Wh for gas (the contract's unit). A gas meter counts volume, so its volume is turned
into energy with the calorific value of the gas it is supplied with, as gas suppliers bill:
kWh = m3 x volume correction x calorific value (MJ/m3) / 3.6. The calorific value belongs to
the supply, not the meter model, so it comes from the caller (``wh_per_m3``).
"""

import itertools
import re
import tomllib
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hardware.codec import WIDTH, RegisterType, WordOrder, decode_raw, scaled
from hardware.errors import RegisterMapError

REGISTERS_DIR = Path(__file__).resolve().parent / "registers"
ENERGY_REGISTER = "import_energy"
# The current registers of an electricity meter, by the names the maps give them (one phase, or
# each phase of a polyphase meter), in amperes.
CURRENT_REGISTERS = ("current", "current_l1", "current_l2", "current_l3")
_MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_BASE_UNIT_FACTOR = {"kWh": 1000, "Wh": 1, "m3": 1000, "L": 1}
ENERGY_UNITS = frozenset({"kWh", "Wh"})
VOLUME_UNITS = frozenset({"m3", "L"})
# The energy register's units each service may use.
SERVICE_UNITS = {
    "electricity": ENERGY_UNITS,
    "water": VOLUME_UNITS,
    "gas": ENERGY_UNITS | VOLUME_UNITS,
}
_WRITE_FUNCTIONS = {"coil": {5, 15}, "holding": {6, 16}}

Function = Literal["input", "holding", "coil", "discrete"]


class Register(BaseModel):
    """One value the device serves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=64)
    address: int = Field(ge=0, le=0xFFFF)
    function: Function
    type: RegisterType
    scale: Decimal = Decimal(1)
    unit: str = ""
    word_order: WordOrder | None = None

    @field_validator("scale", mode="before")
    @classmethod
    def _exact_scale(cls, value: Any) -> Any:
        return Decimal(str(value)) if isinstance(value, float | int) else value

    @property
    def width(self) -> int:
        return WIDTH[self.type]

    @property
    def end(self) -> int:
        """The address after the last word."""
        return self.address + self.width


class Relay(BaseModel):
    """How the device switches supply: which register, written with which function code."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    register_name: str = Field(alias="register")
    write_function: Literal[5, 6, 15, 16]
    on: int = 1
    off: int = 0


class MeterModel(BaseModel):
    """A validated register map."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    kind: Literal["meter", "relay"]
    description: str
    source: str = Field(min_length=1)
    service: Literal["electricity", "water", "gas"] | None = None
    phases: int = Field(default=1, ge=1, le=3)
    channels: int = Field(default=0, ge=0)
    default_baudrate: int = Field(default=9600, gt=0)
    default_parity: Literal["N", "E", "O"] = "N"
    default_unit: int = Field(default=1, ge=1, le=247)
    max_registers_per_request: int = Field(default=125, ge=1, le=125)
    word_order: WordOrder = "big"
    registers: tuple[Register, ...]
    relay: Relay | None = None

    def register(self, name: str) -> Register:
        for reg in self.registers:
            if reg.name == name:
                return reg
        raise KeyError(name)

    def has(self, name: str) -> bool:
        return any(reg.name == name for reg in self.registers)

    def order_of(self, reg: Register) -> WordOrder:
        return reg.word_order or self.word_order

    def value(self, reg: Register, words: list[int]) -> Decimal:
        """The engineering value (in ``reg.unit``) of the words read from ``reg``."""
        return scaled(decode_raw(words, reg.type, self.order_of(reg)), reg.scale)

    def converts_volume(self, reg: Register) -> bool:
        """Whether ``reg`` is a gas volume that needs a calorific value to give Wh."""
        return self.service == "gas" and reg.unit in VOLUME_UNITS

    def base_units(
        self, reg: Register, words: list[int], *, wh_per_m3: Decimal | None = None
    ) -> int:
        """An energy or volume register as an integer in the service's base unit: Wh, or
        litres for water; a gas volume becomes Wh at ``wh_per_m3`` (see the module docstring)."""
        factor = _BASE_UNIT_FACTOR.get(reg.unit)
        if factor is None:
            raise RegisterMapError(self.model, f"unit {reg.unit!r} is not an energy unit", reg.name)
        value = self.value(reg, words) * factor
        if self.converts_volume(reg):
            if wh_per_m3 is None:
                raise RegisterMapError(
                    self.model, "a gas volume needs the supply's calorific value", reg.name
                )
            value = value * wh_per_m3 / 1000  # litres -> m3 -> Wh
        return int(value.to_integral_value())


def load_file(path: Path) -> MeterModel:
    """Read and validate one register map file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegisterMapError(path, f"cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RegisterMapError(path, f"not valid TOML: {exc}") from exc
    try:
        model = MeterModel.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise RegisterMapError(path, _describe(err), _register_at(data, err["loc"])) from exc
    if model.model != path.stem:
        raise RegisterMapError(path, f"model {model.model!r} differs from the file name")
    _check(path, model)
    return model


@cache
def load_model(name: str, extra: tuple[Path, ...] = ()) -> MeterModel:
    """The model ``name`` from the shipped maps or the ``extra`` directories."""
    folders = search_path(extra)
    if not _MODEL_NAME.match(name):
        raise RegisterMapError(folders[0] / f"{name}.toml", "not a valid model name")
    found = [f / f"{name}.toml" for f in folders if (f / f"{name}.toml").is_file()]
    if not found:
        known = ", ".join(available_models(extra)) or "none"
        raise RegisterMapError(folders[0] / f"{name}.toml", f"no such model (known: {known})")
    if len(found) > 1:
        raise RegisterMapError(found[1], f"model {name!r} is also defined in {found[0]}")
    return load_file(found[0])


def available_models(extra: tuple[Path, ...] = ()) -> list[str]:
    return sorted({p.stem for f in search_path(extra) for p in f.glob("*.toml")})


def search_path(extra: tuple[Path, ...] = ()) -> tuple[Path, ...]:
    """The shipped maps' directory, then ``extra``; an extra that is not a directory raises."""
    for folder in extra:
        if not folder.is_dir():
            raise RegisterMapError(folder, "register path: not a directory")
    return (REGISTERS_DIR, *extra)


def _describe(err: Any) -> str:
    field = ".".join(str(part) for part in err["loc"] if not isinstance(part, int))
    return f"{field}: {err['msg']}"


def _register_at(data: dict[str, Any], loc: tuple[Any, ...]) -> str | None:
    if len(loc) >= 2 and loc[0] == "registers" and isinstance(loc[1], int):
        regs = data.get("registers") or []
        if loc[1] < len(regs) and isinstance(regs[loc[1]], dict):
            return str(regs[loc[1]].get("name", f"#{loc[1]}"))
        return f"#{loc[1]}"
    return None


def _check(path: Path, model: MeterModel) -> None:
    names: set[str] = set()
    by_function: dict[str, list[Register]] = {}
    for reg in model.registers:
        if reg.name in names:
            raise RegisterMapError(path, "declared twice", reg.name)
        names.add(reg.name)
        if reg.end - 1 > 0xFFFF:
            raise RegisterMapError(path, "runs past address 0xFFFF", reg.name)
        bit = reg.function in ("coil", "discrete")
        if bit != (reg.type == "bool"):
            raise RegisterMapError(path, f"type {reg.type} cannot be a {reg.function}", reg.name)
        by_function.setdefault(reg.function, []).append(reg)
    for regs in by_function.values():
        ordered = sorted(regs, key=lambda r: r.address)
        for prev, cur in itertools.pairwise(ordered):
            if cur.address < prev.end:
                raise RegisterMapError(
                    path, f"overlaps {prev.name!r} at 0x{cur.address:04X}", cur.name
                )
    if model.kind == "meter":
        if ENERGY_REGISTER not in names:
            raise RegisterMapError(path, "a meter needs an energy register", ENERGY_REGISTER)
        energy = model.register(ENERGY_REGISTER)
        if energy.unit not in _BASE_UNIT_FACTOR:
            raise RegisterMapError(path, f"unit {energy.unit!r} is not an energy unit", energy.name)
        allowed = SERVICE_UNITS[model.service or "electricity"]
        if energy.unit not in allowed:
            raise RegisterMapError(
                path,
                f"unit {energy.unit!r} cannot meter {model.service or 'electricity'} "
                f"(use {', '.join(sorted(allowed))})",
                energy.name,
            )
    if model.relay is not None:
        if model.relay.register_name not in names:
            name = model.relay.register_name
            raise RegisterMapError(path, "the relay names an unknown register", name)
        reg = model.register(model.relay.register_name)
        if model.relay.write_function not in _WRITE_FUNCTIONS.get(reg.function, set()):
            raise RegisterMapError(
                path,
                f"function {model.relay.write_function} cannot write a {reg.function}",
                reg.name,
            )
    elif model.kind == "relay":
        raise RegisterMapError(path, "a relay module needs a [relay] table")
