"""Pure checks on an entry's lines: what makes an entry acceptable before it touches the DB."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hub.errors import EmptyEntryError, InvalidInputError, UnbalancedEntryError, ZeroLineError
from hub.ledger.sql import MAX_AMOUNT

Line = tuple[str, int]
"""(account id, signed amount in minor units): positive credits the account, negative debits."""


def check_lines(lines: Sequence[Line], *, allow_empty: bool = False) -> dict[str, int]:
    """Validate lines and return the net change per account. Raises a LedgerError subclass:
    fewer than two lines (unless ``allow_empty`` and there are none), a zero or non-integer
    amount, or a sum other than zero."""
    if not lines and allow_empty:
        return {}
    if len(lines) < 2:
        raise EmptyEntryError()
    deltas: dict[str, int] = {}
    for account_id, amount in lines:
        if type(amount) is not int:  # bool, float and Decimal are refused: money is an int
            raise InvalidInputError("amount", f"not an integer: {amount!r}")
        if amount == 0:
            raise ZeroLineError(account_id)
        if abs(amount) >= MAX_AMOUNT:
            raise InvalidInputError("amount", f"out of range: {amount}")
        deltas[account_id] = deltas.get(account_id, 0) + amount
    total = sum(deltas.values())
    if total != 0:
        raise UnbalancedEntryError(total)
    return deltas


def merge_deltas(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Net change per account over many entries, without accounts whose net is zero."""
    out: dict[str, int] = {}
    for part in parts:
        for account_id, amount in part.items():
            out[account_id] = out.get(account_id, 0) + amount
    return {k: v for k, v in out.items() if v != 0}
