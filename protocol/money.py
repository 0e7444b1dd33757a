"""Money as an integer count of minor units; decimal strings in major units at the edges."""

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import AfterValidator

# ISO 4217 minor-unit exponents for the currencies we expect; anything else defaults to 2.
_EXPONENTS = {"JPY": 0, "KRW": 0, "UGX": 0, "RWF": 0, "XOF": 0, "XAF": 0, "KWD": 3, "BHD": 3}
_AMOUNT = re.compile(r"^-?\d{1,15}(\.\d+)?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def exponent(currency: str) -> int:
    if not _CURRENCY.match(currency):
        raise ValueError(f"currency {currency!r} is not an ISO 4217 code")
    return _EXPONENTS.get(currency, 2)


def currency_code(value: str) -> str:
    """``value`` if it is an ISO 4217 code (ValueError otherwise), for pydantic validators."""
    exponent(value)
    return value


Currency = Annotated[str, AfterValidator(currency_code)]


def to_minor(amount: str, currency: str) -> int:
    """``"12.50"`` USD to 1250; refuses more decimals than the currency has, and non-numbers."""
    if not isinstance(amount, str) or not _AMOUNT.match(amount):
        raise ValueError(f'amount {amount!r} is not a decimal string like "12.50"')
    try:
        value = Decimal(amount)
    except InvalidOperation as exc:
        raise ValueError(f"amount {amount!r} is not a number") from exc
    scaled = value.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {amount!r} has more decimals than {currency} allows")
    return int(scaled)


def to_major(minor: int, currency: str) -> str:
    """1250 USD to ``"12.50"``."""
    exp = exponent(currency)
    return f"{Decimal(minor).scaleb(-exp):.{exp}f}"
