"""Offline top-up tokens (contract section 7): OpenPAYGO tokens that carry money to a meter.

Pure logic shared by the hub (which vends) and the agent (which redeems); every bit of token
arithmetic is the ``openpaygo`` package's. A token is an OpenPAYGO *extended* Add-Time token:
12 decimal digits carrying a value of 1 to ``MAX_TOKEN_VALUE`` minor units and a count, both
hidden with the meter's 128-bit secret key and starting code (docs/tokens.md).

The redeeming side keeps, per meter, the highest count it accepted and OpenPAYGO's used-counts
window (the last ``WINDOW`` counts): a token whose count is in the window and already used is
``used``; one below the window is ``too_old``; one that does not decode is ``invalid``; one the
hub cancelled is ``cancelled``. ``Lockout`` refuses every entry for a growing delay after
repeated bad ones.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from openpaygo import OpenPAYGOTokenDecoder, OpenPAYGOTokenEncoder, TokenType

TOKEN_DIGITS = 12
MAX_TOKEN_VALUE = 999_999
WINDOW = OpenPAYGOTokenDecoder.MAX_UNUSED_OLDER_TOKENS
KEY_HEX_DIGITS = 32

Reason = Literal["used", "too_old", "invalid", "cancelled", "locked_out"]


class TokenRejectedError(Exception):
    """A token the meter refuses, with the one-word reason the CLI prints."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason


@dataclass(frozen=True)
class MeterSecret:
    """A meter's token secret: never logged, never in an API answer."""

    key: str = field(repr=False)  # 32 hex digits
    starting_code: int = field(repr=False)

    @classmethod
    def new(cls) -> MeterSecret:
        # A starting code of 0 would make openpaygo derive one from the key: never draw it.
        return cls(secrets.token_hex(KEY_HEX_DIGITS // 2), secrets.randbelow(999_999_999) + 1)


def seal(command_key: str, meter: str, secret: MeterSecret) -> str:
    """``secret`` as 40 hex digits for the meter's credit state, so that neither the broker nor
    the hub's command table holds it in clear: key and starting code XOR a pad derived with
    HMAC-SHA256 from the gateway's command key and the meter id."""
    plain = bytes.fromhex(secret.key) + secret.starting_code.to_bytes(4, "big")
    return bytes(a ^ b for a, b in zip(plain, _pad(command_key, meter), strict=True)).hex()


def unseal(command_key: str, meter: str, sealed: str) -> MeterSecret:
    plain = bytes(a ^ b for a, b in zip(bytes.fromhex(sealed), _pad(command_key, meter),
                                        strict=True))  # fmt: skip
    return MeterSecret(plain[:16].hex(), int.from_bytes(plain[16:], "big"))


def _pad(command_key: str, meter: str) -> bytes:
    return hmac.new(bytes.fromhex(command_key), f"smsa-token-key:{meter}".encode(),
                    hashlib.sha256).digest()[:20]  # fmt: skip


def encode(secret: MeterSecret, last_count: int, amount: int) -> tuple[int, str]:
    """The next token after ``last_count`` for ``amount`` minor units: (its count, its digits)."""
    if type(amount) is not int or not 0 < amount <= MAX_TOKEN_VALUE:
        raise ValueError(f"a token carries 1 to {MAX_TOKEN_VALUE} minor units")
    count, token = OpenPAYGOTokenEncoder.generate_token(
        secret_key=secret.key,
        count=last_count,
        value=amount,
        token_type=TokenType.ADD_TIME,
        starting_code=secret.starting_code,
        extended_token=True,
    )
    return int(count), str(token)


@dataclass(frozen=True)
class Redemption:
    amount: int
    count: int
    digits: str
    last_count: int  # the redeeming side's new highest count
    used_counts: tuple[int, ...]  # its new used-counts window


def normalize(code: str) -> str:
    """The token's digits: spaces and dashes (as printed on a receipt) dropped."""
    return "".join(ch for ch in code if ch not in " -")


def redeem(
    secret: MeterSecret,
    code: str,
    last_count: int,
    used_counts: Collection[int],
    *,
    cancelled: Collection[int] = (),
    redeemed: Collection[str] = (),
) -> Redemption:
    """Decode ``code`` against the meter's state; TokenRejectedError with the reason otherwise.

    ``redeemed``: the digits of every token the meter accepted. openpaygo's decoder takes the
    first count whose code matches, and an extended token's code can match a second, later
    count too (seen with openpaygo 0.6.3: a used token decoding again as a new count), so the
    used-counts window alone could credit one token twice; the digits seen before cannot.
    """
    digits = normalize(code)
    if len(digits) != TOKEN_DIGITS or not digits.isdigit():
        raise TokenRejectedError("invalid", f"a token has {TOKEN_DIGITS} digits")
    if digits in redeemed:
        raise TokenRejectedError("used")
    value, kind, count, updated = _decode(secret, digits, last_count, list(used_counts))
    if kind == TokenType.ALREADY_USED:
        _, again, _, _ = _decode(secret, digits, last_count, [])
        raise TokenRejectedError("used" if again == TokenType.ADD_TIME else "too_old")
    if kind != TokenType.ADD_TIME or value is None or count is None:
        raise TokenRejectedError("invalid", "not a token of this meter")
    if count in cancelled:
        raise TokenRejectedError("cancelled", "the hub cancelled this token")
    window = tuple(updated) if updated is not None else (count,)  # openpaygo: None on a first use
    return Redemption(int(value), int(count), digits, max(last_count, int(count)), window)


def _decode(
    secret: MeterSecret, digits: str, last_count: int, used: list[int]
) -> tuple[int | None, int, int | None, list[int] | None]:
    try:
        value, kind, count, updated = OpenPAYGOTokenDecoder.decode_token(
            token=digits,
            secret_key=secret.key,
            count=last_count,
            used_counts=used,
            starting_code=secret.starting_code,
        )
    except UnboundLocalError:
        # openpaygo 0.6.3's extended decoder reads an unset flag when no count matches at all
        # (token_decode.py, get_activation_value_count_from_extended_token): a wrong code.
        return None, TokenType.INVALID, None, None
    return value, kind, count, updated


@dataclass(frozen=True)
class Lockout:
    """Refuse entries after ``free`` bad ones in a row, for ``base_s`` doubling with each
    further bad one, up to ``max_s`` (the way OpenPAYGO reference devices slow a brute force).
    A good entry resets it."""

    failures: int = 0
    until: float = 0.0  # a time.time() instant
    free: int = 3
    base_s: float = 15.0
    max_s: float = 3600.0

    def locked(self, now: float) -> float:
        """Seconds left locked (0: accepting entries)."""
        return max(0.0, self.until - now)

    def failed(self, now: float) -> Lockout:
        failures = self.failures + 1
        until = self.until
        if failures >= self.free:
            until = now + min(self.max_s, self.base_s * 2 ** (failures - self.free))
        return Lockout(failures, until, self.free, self.base_s, self.max_s)

    def succeeded(self) -> Lockout:
        return Lockout(0, 0.0, self.free, self.base_s, self.max_s)
