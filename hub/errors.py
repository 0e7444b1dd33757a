"""The hub's error tree: one root, typed subclasses, an HTTP status hint for the API handler."""

from __future__ import annotations


class HubError(Exception):
    """Root of every error the hub raises on purpose."""

    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(HubError):
    http_status = 404

    def __init__(self, kind: str, id: object) -> None:
        super().__init__(f"unknown {kind}: {id!r}")
        self.kind = kind
        self.id = id


class ForbiddenError(HubError):
    """A valid key whose role or account does not allow this."""

    http_status = 403


class ConflictError(HubError):
    http_status = 409


class InvalidInputError(HubError):
    http_status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class BodyTooLargeError(HubError):
    """A request body over the limit; it was not read (past the limit)."""

    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")
        self.limit = limit


class TooManyFailuresError(HubError):
    """Too many failed authentications from one client address (``hub.api.ratelimit``)."""

    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"too many failed authentications from this address; retry in {retry_after} s"
        )
        self.retry_after = retry_after


class DatabaseError(HubError):
    """The database refused or failed; the original driver error is chained."""


class LedgerError(HubError):
    """A posting that the ledger refuses. Nothing was written when this is raised."""

    http_status = 422


class EmptyEntryError(LedgerError):
    def __init__(self) -> None:
        super().__init__("an entry needs at least two non-zero lines")


class ZeroLineError(LedgerError):
    def __init__(self, account_id: str) -> None:
        super().__init__(f"zero amount on account {account_id!r}")
        self.account_id = account_id


class UnbalancedEntryError(LedgerError):
    def __init__(self, total: int) -> None:
        super().__init__(f"entry lines sum to {total}, not zero")
        self.total = total


class UnknownAccountError(LedgerError):
    http_status = 404

    def __init__(self, account_id: str) -> None:
        super().__init__(f"unknown account: {account_id!r}")
        self.account_id = account_id


class CurrencyMismatchError(LedgerError):
    def __init__(self, account_id: str, expected: str, actual: str) -> None:
        super().__init__(f"account {account_id!r} is in {actual}, the entry in {expected}")
        self.account_id = account_id
        self.expected = expected
        self.actual = actual


class BelowFloorError(LedgerError):
    http_status = 409

    def __init__(self, account_id: str, balance: int, amount: int, floor: int) -> None:
        super().__init__(
            f"account {account_id!r}: balance {balance} + {amount} would fall below floor {floor}"
        )
        self.account_id = account_id
        self.balance = balance
        self.amount = amount
        self.floor = floor


class IdempotencyConflictError(LedgerError):
    http_status = 409

    def __init__(self, key: str, entry_id: int) -> None:
        super().__init__(f"idempotency key {key!r} was used for a different request")
        self.key = key
        self.entry_id = entry_id


class AlreadyReversedError(LedgerError):
    http_status = 409

    def __init__(self, entry_id: int, reversal_id: int) -> None:
        super().__init__(f"entry {entry_id} is already reversed by entry {reversal_id}")
        self.entry_id = entry_id
        self.reversal_id = reversal_id
