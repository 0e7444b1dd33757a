"""Offline top-up tokens at the gateway (contract section 7, docs/tokens.md).

``TokenDesk.redeem(meter, code)`` decodes a token with the meter's secret (delivered sealed in
its credit state, ``protocol.tokens.unseal``), and in ONE store transaction: records it, adds
its amount to the meter's local balance (``CreditBook.credit``) and writes the
``token_redeemed`` event to the outbox, so the credit is applied at once, broker or not, and
the hub hears of it through the receipts-confirmed delivery path. Refusals (``used``,
``too_old``, ``invalid``, ``cancelled``) count towards the meter's lockout (``locked_out``
then, for a growing delay); each is reported as a ``token_rejected`` event.

Until the hub settles a redeemed token, the local balance is the hub's balance plus that token:
``unsettled`` is what ``CreditBook.apply`` adds to each new credit state (every token redeemed
here that the state lists neither as settled nor as cancelled; both kinds are in its balance).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agent.events import new_event
from agent.store import AgentStore
from protocol.messages import CreditState, Event, TokenSetup
from protocol.tokens import Lockout, Redemption, TokenRejectedError, redeem, unseal

log = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS token_meter (
        meter TEXT PRIMARY KEY,
        last_count INTEGER NOT NULL DEFAULT 0,
        used_counts TEXT NOT NULL DEFAULT '[]',
        failures INTEGER NOT NULL DEFAULT 0,
        locked_until REAL NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS token_redeemed (
        meter TEXT NOT NULL,
        count INTEGER NOT NULL,
        digits TEXT NOT NULL,
        amount INTEGER NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (meter, count)
    )""",
)

REDEEMED = "token_redeemed"
REJECTED = "token_rejected"


def ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


def unsettled(conn: sqlite3.Connection, meter: str, tokens: TokenSetup | None) -> int:
    """What the tokens redeemed here add to a credit state's balance (see the module docstring);
    tokens the state lists are forgotten (their money is in its balance)."""
    rows = conn.execute("SELECT count, amount FROM token_redeemed WHERE meter = ?", (meter,))
    known = set(tokens.settled) | set(tokens.cancelled) if tokens is not None else set()
    total = 0
    for count, amount in rows.fetchall():
        if count not in known:
            total += int(amount)
    return total


def behind(new: TokenSetup | None, held: TokenSetup | None) -> bool:
    """``new`` was read before ``held`` (the hub can deliver an older snapshot of the same
    seq later: its ingest sends batch states at most once per interval): it lacks a token
    ``held`` knows as settled or cancelled and knows none ``held`` does not. Such a state is
    consistent in itself, so applying it would be safe, but it would forget a cancellation."""
    if held is None:
        return False
    known_new = set(new.settled) | set(new.cancelled) if new is not None else set()
    known_held = set(held.settled) | set(held.cancelled)
    return bool(known_held - known_new) and not known_new - known_held


@dataclass(frozen=True)
class Applied:
    meter: str
    amount: int  # minor units
    count: int
    balance: int | None  # the meter's local balance after it


class CreditLike(Protocol):
    """What the desk needs of the credit book (``agent.credit.CreditBook``)."""

    def state(self, meter_id: str) -> CreditState | None: ...
    def credit(self, conn: sqlite3.Connection, meter_id: str, amount: int) -> int | None: ...


class OutboxLike(Protocol):
    def add_event(self, event: Event) -> Any: ...


class TokenDesk:
    """Redeem tokens for this gateway's meters (thread-safe through the store)."""

    def __init__(
        self,
        store: AgentStore,
        keys: Callable[[], tuple[str, ...]],
        credit: CreditLike,
        outbox: OutboxLike,
        lockout: Lockout | None = None,
    ) -> None:
        self._store = store
        self._keys = keys  # the command keys honoured, current first (``agent.credentials``)
        self._credit = credit
        self._outbox = outbox
        self._lockout = lockout or Lockout()
        with store.transaction() as conn:
            ensure_schema(conn)

    def redeem(self, meter: str, code: str, now: float | None = None) -> Applied:
        """Apply ``code`` to ``meter``; TokenRejectedError with the reason otherwise."""
        moment = time.time() if now is None else now
        state = self._credit.state(meter)
        with self._store.transaction() as conn:
            row = conn.execute(
                "SELECT last_count, used_counts, failures, locked_until FROM token_meter"
                " WHERE meter = ?",
                (meter,),
            ).fetchone()
            if row is None:
                conn.execute("INSERT INTO token_meter (meter) VALUES (?)", (meter,))
                row = (0, "[]", 0, 0.0)
            lock = Lockout(int(row[2]), float(row[3]), self._lockout.free, self._lockout.base_s,
                           self._lockout.max_s)  # fmt: skip
            left = lock.locked(moment)
            if left > 0:
                raise TokenRejectedError("locked_out", f"try again in {left:.0f} s")
            got = _decode_any(conn, self._keys(), meter, code, state=state, row=row)
            if isinstance(got, TokenRejectedError):  # kept: it counts, and it is reported
                lock = lock.failed(moment)
                conn.execute(
                    "UPDATE token_meter SET failures = ?, locked_until = ? WHERE meter = ?",
                    (lock.failures, lock.until, meter),
                )
                self._outbox.add_event(new_event(REJECTED, meter, got.reason,
                                                 failures=lock.failures))  # fmt: skip
            else:
                conn.execute(
                    "UPDATE token_meter SET last_count = ?, used_counts = ?, failures = 0,"
                    " locked_until = 0 WHERE meter = ?",
                    (got.last_count, json.dumps(list(got.used_counts)), meter),
                )
                event = new_event(REDEEMED, meter, "token typed at the gateway", count=got.count,
                                  amount=got.amount)  # fmt: skip
                conn.execute(
                    "INSERT INTO token_redeemed (meter, count, digits, amount, at) VALUES"
                    " (?, ?, ?, ?, ?)",
                    (meter, got.count, got.digits, got.amount, event.at.isoformat()),
                )
                balance = self._credit.credit(conn, meter, got.amount)
                self._outbox.add_event(event)
        if isinstance(got, TokenRejectedError):
            log.warning("meter %s: token refused: %s", meter, got.reason)
            raise got
        log.info("meter %s: token %d applied, %d minor units", meter, got.count, got.amount)
        return Applied(meter, got.amount, got.count, balance)


def _decode_any(
    conn: sqlite3.Connection,
    keys: tuple[str, ...],
    meter: str,
    code: str,
    *,
    state: CreditState | None,
    row: tuple[Any, ...],
) -> Redemption | TokenRejectedError:
    """``_decode`` with each honoured key: during a credential rotation the meter's secret may
    still be sealed with the key being replaced."""
    got: Redemption | TokenRejectedError = TokenRejectedError("invalid", "no command key")
    for key in keys:
        got = _decode(conn, key, meter, code, state=state, row=row)
        if not (isinstance(got, TokenRejectedError) and got.reason == "invalid"):
            return got
    return got


def _decode(
    conn: sqlite3.Connection,
    command_key: str,
    meter: str,
    code: str,
    *,
    state: CreditState | None,
    row: tuple[Any, ...],
) -> Redemption | TokenRejectedError:
    try:
        if state is None or state.tokens is None:
            raise TokenRejectedError("invalid", "this meter has no token key yet")
        secret = unseal(command_key, meter, state.tokens.sealed)
        seen = {d for (d,) in conn.execute(
            "SELECT digits FROM token_redeemed WHERE meter = ?", (meter,))}  # fmt: skip
        return redeem(secret, code, int(row[0]), json.loads(row[1]),
                      cancelled=state.tokens.cancelled, redeemed=seen)  # fmt: skip
    except TokenRejectedError as exc:
        return exc
