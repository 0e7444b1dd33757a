"""Meter physics (pure, no I/O): load, supply, tamper (relay bypass, register frozen) and exactly
integrated energy.

Time is simulated epoch nanoseconds, passed in by the caller. Power is kept in milliwatts and
energy in milliwatt-nanoseconds (1 Wh = 3.6e15), both Python integers, so energy is exact:
after ``t`` ns at ``P`` W the meter has advanced by exactly ``P * 1000 * t`` units.
"""

import math
from dataclasses import dataclass, field
from fractions import Fraction

from firmware_sim.errors import ConfigError
from firmware_sim.profile import PERMILLE, DailyProfile

UNITS_PER_WH = 3_600 * 1_000 * 1_000_000_000  # mW·ns in one Wh
NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class Mains:
    """Nominal supply: phase voltage and frequency."""

    voltage: float = 230.0
    frequency: float = 50.0


@dataclass(frozen=True)
class Reading:
    """What the meter measures at one instant."""

    at_ns: int
    energy_units: int  # mW·ns, exact
    power_w: Fraction  # total active power
    voltage_v: float  # per phase
    current_a: float  # per phase
    frequency_hz: float
    power_factor: float
    phases: int

    @property
    def energy_wh(self) -> Fraction:
        return Fraction(self.energy_units, UNITS_PER_WH)

    @property
    def apparent_va(self) -> float:
        return self.voltage_v * self.current_a * self.phases

    @property
    def reactive_var(self) -> float:
        apparent = self.apparent_va
        return math.sqrt(max(apparent * apparent - float(self.power_w) ** 2, 0.0))


@dataclass
class Meter:
    """One simulated meter. Every mutator first integrates energy up to ``at_ns``.

    ``at_ns`` is the simulated time the meter starts at (energy is integrated from there).
    """

    at_ns: int
    load_w: int = 0
    profile: DailyProfile | None = None
    power_factor_milli: int = 950
    phases: int = 1
    mains: Mains = field(default_factory=Mains)
    supply_on: bool = True
    tamper_bypass: bool = False
    tamper_stuck: bool = False  # the register stands still while current flows (tamper)
    energy_units: int = 0

    def __post_init__(self) -> None:
        check_load(self.load_w)
        check_power_factor(self.power_factor_milli)

    @property
    def flowing(self) -> bool:
        """Energy flows when the supply is on, or when the relay is bypassed (tamper)."""
        return self.supply_on or self.tamper_bypass

    def advance(self, at_ns: int) -> None:
        """Integrate energy up to ``at_ns`` (an earlier time changes nothing)."""
        if at_ns <= self.at_ns:
            return
        if self.flowing and self.load_w and not self.tamper_stuck:
            self.energy_units += self.load_w * (self._integral(at_ns) - self._integral(self.at_ns))
        self.at_ns = at_ns

    def set_load(self, load_w: int, at_ns: int) -> None:
        check_load(load_w)
        self.advance(at_ns)
        self.load_w = load_w

    def set_supply(self, on: bool, at_ns: int) -> None:
        self.advance(at_ns)
        self.supply_on = on

    def set_tamper(self, bypass: bool, at_ns: int) -> None:
        self.advance(at_ns)
        self.tamper_bypass = bypass

    def set_stuck(self, stuck: bool, at_ns: int) -> None:
        """Freeze the energy register (a tampered metrology): power and current still show."""
        self.advance(at_ns)
        self.tamper_stuck = stuck

    def set_power_factor(self, milli: int, at_ns: int) -> None:
        check_power_factor(milli)
        self.advance(at_ns)
        self.power_factor_milli = milli

    def reset_energy(self, wh: int, at_ns: int) -> None:
        """The meter is replaced (or its register cleared): energy restarts at ``wh``."""
        if wh < 0:
            raise ConfigError("energy", "must not be negative")
        self.advance(at_ns)
        self.energy_units = wh * UNITS_PER_WH

    def energy_wh(self, at_ns: int) -> int:
        """Whole Wh measured up to ``at_ns`` (rounded down, as a register would show it)."""
        self.advance(at_ns)
        return self.energy_units // UNITS_PER_WH

    def power_w(self, at_ns: int) -> Fraction:
        if not (self.flowing and self.load_w):
            return Fraction(0)
        factor = self.profile.factor_at(at_ns) if self.profile else PERMILLE
        return Fraction(self.load_w * factor, PERMILLE)

    def reading(self, at_ns: int) -> Reading:
        self.advance(at_ns)
        power = self.power_w(at_ns)
        seconds = at_ns / NS_PER_S
        # Small deterministic wander, a function of simulated time only.
        voltage = self.mains.voltage * (1 + 0.003 * math.sin(2 * math.pi * seconds / 900))
        frequency = self.mains.frequency + 0.02 * math.sin(2 * math.pi * seconds / 300)
        pf = self.power_factor_milli / 1000 if power else 1.0
        current = float(power) / self.phases / (voltage * pf) if power else 0.0
        return Reading(
            at_ns=at_ns,
            energy_units=self.energy_units,
            power_w=power,
            voltage_v=voltage,
            current_a=current,
            frequency_hz=frequency,
            power_factor=pf,
            phases=self.phases,
        )

    def _integral(self, at_ns: int) -> int:
        """Per-mille nanoseconds of the load factor from the epoch to ``at_ns``."""
        if self.profile is None:
            return PERMILLE * at_ns
        return self.profile.integral(at_ns)


def check_load(load_w: int) -> None:
    if load_w < 0:
        raise ConfigError("load", f"{load_w} W: must not be negative")
    if load_w > 0xFFFFFFFF:
        raise ConfigError("load", f"{load_w} W: at most {0xFFFFFFFF}")


def check_power_factor(milli: int) -> None:
    if not 1 <= milli <= 1000:
        raise ConfigError("power factor", f"{milli / 1000}: must be in (0, 1]")
