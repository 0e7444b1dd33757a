"""Decimal strings at the API edge, integer minor units inside."""

from __future__ import annotations

from hub.errors import InvalidInputError
from protocol.money import to_major, to_minor


def parse_amount(field: str, amount: str, currency: str, *, maximum: int | None = None) -> int:
    """A positive amount in minor units; InvalidInputError naming ``field`` otherwise."""
    try:
        minor = to_minor(amount, currency)
    except ValueError as exc:
        raise InvalidInputError(field, str(exc)) from exc
    if minor <= 0:
        raise InvalidInputError(field, "must be greater than zero")
    if maximum is not None and minor > maximum:
        raise InvalidInputError(field, f"exceeds the maximum of {to_major(maximum, currency)}")
    return minor


def major(minor: int, currency: str) -> str:
    return to_major(minor, currency)
