"""A tariff as data: components, each owned by one provider (contract: ``POST /tariffs``).

A customer pays the sum of the components; each provider receives exactly its own. A component
prices energy in one way: flat (``per_kwh`` or ``per_m3``), by time-of-use windows, or by inclining
blocks that reset each calendar month; ``per_day`` is a standing charge accrued daily by the hub;
``tax_rate`` makes a tax component: that fraction of every non-tax component.
"""

from datetime import time
from decimal import Decimal
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocol.money import Currency, exponent

Price = Annotated[Decimal, Field(ge=0, le=Decimal(1_000_000), max_digits=18, decimal_places=8)]
ProviderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TouWindow(_Frozen):
    """A price that applies on the listed weekdays (0 = Monday) from ``start`` until ``end``.

    ``end`` at or before ``start`` wraps past midnight (22:00-06:00).
    """

    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
    start: time
    end: time
    price: Price

    @field_validator("days")
    @classmethod
    def _weekdays(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if not days or any(d < 0 or d > 6 for d in days):
            raise ValueError("days are weekday numbers 0 (Monday) to 6 (Sunday)")
        return days


class Block(_Frozen):
    """Price for energy this calendar month up to ``up_to`` (kWh or m3); None = no upper bound."""

    up_to: Annotated[Decimal, Field(gt=0)] | None = None
    price: Price


class Component(_Frozen):
    provider: ProviderId
    per_kwh: Price | None = None
    per_m3: Price | None = None
    per_day: Price | None = None
    tou: tuple[TouWindow, ...] = ()
    blocks: tuple[Block, ...] = ()
    tax_rate: Annotated[Decimal, Field(ge=0, le=1)] | None = None

    @model_validator(mode="after")
    def _one_way_to_price(self) -> Self:
        if self.per_kwh is not None and self.per_m3 is not None:
            raise ValueError("give per_kwh or per_m3, not both")
        if self.tou and self.blocks:
            raise ValueError("a component prices by tou windows or by blocks, not both")
        if self.blocks:
            bounds = [b.up_to for b in self.blocks[:-1]]
            closed = [b for b in bounds if b is not None]
            if len(closed) != len(bounds) or closed != sorted(set(closed)):
                raise ValueError("blocks rise in order and only the last may be open-ended")
        if self.tax_rate is not None and (self.energy_priced or self.per_day is not None):
            raise ValueError("a tax component has only tax_rate")
        if not self.energy_priced and self.per_day is None and self.tax_rate is None:
            raise ValueError("a component needs per_kwh, per_m3, per_day, tou, blocks or tax_rate")
        return self

    @property
    def energy_priced(self) -> bool:
        return bool(self.per_kwh is not None or self.per_m3 is not None or self.tou or self.blocks)

    @property
    def flat(self) -> Decimal:
        """The flat price per kWh (or m3), used outside any time-of-use window."""
        return self.per_kwh if self.per_kwh is not None else (self.per_m3 or Decimal(0))


class Tariff(_Frozen):
    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    version: int = Field(default=1, ge=1)
    currency: Currency = "USD"
    timezone: str = "UTC"
    components: tuple[Component, ...] = Field(min_length=1, max_length=32)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _one_unit(self) -> Self:
        if any(c.per_kwh is not None for c in self.components) and any(
            c.per_m3 is not None for c in self.components
        ):
            raise ValueError("a tariff prices per kWh or per m3, not both")
        return self

    @property
    def unit(self) -> Literal["kWh", "m3"] | None:
        """What the flat prices are per: kWh (electricity, gas) or m3 (water); None when the
        tariff has none (only windows, blocks, standing charges or taxes: either service)."""
        for c in self.components:
            if c.per_kwh is not None:
                return "kWh"
            if c.per_m3 is not None:
                return "m3"
        return None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.provider for c in self.components))

    @property
    def exponent(self) -> int:
        return exponent(self.currency)


# The unit a meter's service is priced in: its base unit is Wh (electricity, gas) or litres.
SERVICE_PRICE_UNIT: dict[str, Literal["kWh", "m3"]] = {
    "electricity": "kWh",
    "gas": "kWh",
    "water": "m3",
}


def unit_problem(tariff: Tariff, service: str) -> str | None:
    """Why ``tariff`` cannot price a meter of ``service``, or None if it can."""
    wanted = SERVICE_PRICE_UNIT[service]
    if tariff.unit is None or tariff.unit == wanted:
        return None
    return f"tariff {tariff.id!r} prices per {tariff.unit}; {service} is priced per {wanted}"
