"""The gate every hub command passes before the agent acts on it: at most once, only if signed.

Checks, in order, each refusal a :class:`CommandRejected` with a one-line reason: size; JSON
object; signature (HMAC-SHA256 over the canonical raw payload, checked before the model sees
it); the message model; a known action; ``credit`` carrying a valid credit state; expiry
(``expires_at <= now``) and an ``issued_at`` no more than ``MAX_SKEW`` ahead of the gateway's
clock; replay: the command id is recorded in SQLite in the same transaction that accepts it, so
a second delivery (QoS 1 redelivery, the hub sending it again, a replay attack) is refused as
:class:`CommandReplayed`; and order: a command issued before the newest one accepted for the
same meter and group (relay: disconnect/reconnect; credit; prompt) is refused as superseded, so
a stale disconnect delivered late never undoes a newer reconnect. A command refused for any
other reason does not consume its id. Seen ids are kept until a day after the command expired
(an expired command is refused anyway), then pruned. The keys honoured are those of
``agent.credentials`` (the current one and, after a rotation, the one it replaced, until the
first command under the new key).

Epoch (checked before the replay memory, which a lost store no longer has): a command bound to
a store ``epoch`` other than this gateway's is refused as :class:`WrongEpoch`, and so is one
bound to none that was issued before this store began (less ``MAX_SKEW``): a command captured
before the gateway's store was lost and made anew is refused after it.
"""

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.credentials import Credentials
from agent.errors import CommandRejected, CommandReplayed, WrongEpoch
from agent.store import AgentStore
from protocol.errors import ProtocolError
from protocol.messages import (
    ACTIONS,
    COMMAND_GROUPS,
    Command,
    CreditState,
    Rotation,
    load_json,
    validate,
)
from protocol.signing import SIGNATURE_FIELD, verify

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 16 * 1024
MAX_SKEW = timedelta(minutes=5)
KEEP_AFTER_EXPIRY = timedelta(days=1)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS command_seen (
    id TEXT PRIMARY KEY,
    meter TEXT NOT NULL,
    action TEXT NOT NULL,
    expires_us INTEGER NOT NULL,
    accepted_at TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS command_latest (
    meter TEXT NOT NULL,
    grp TEXT NOT NULL,
    issued_us INTEGER NOT NULL,
    PRIMARY KEY (meter, grp)
)""",
)


class CommandGate:
    """Verifies hub commands and remembers the ids it accepted (see the module docstring)."""

    def __init__(
        self,
        command_key_hex: str,
        store: AgentStore | Path,
        *,
        epoch: str | None = None,
        began: datetime | None = None,
        mqtt_password: str | None = None,
    ) -> None:
        """``store``: the agent's store (shared), or a path to open one of its own; ``epoch``
        and ``began``: the store's epoch and when it began (``Outbox``; None: not checked);
        ``command_key_hex`` and ``mqtt_password``: the configured credentials, until the hub
        rotates them (``agent.credentials``)."""
        try:
            if len(bytes.fromhex(command_key_hex)) < 16:
                raise ValueError("shorter than 16 bytes")
        except ValueError as exc:
            raise ValueError(f"command_key is not a usable hex key: {exc}") from exc
        self.epoch = epoch
        self.began = began
        self._store, self._owned = AgentStore.of(store)
        self.path = self._store.path
        with self._store.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
        self.credentials = Credentials(self._store, command_key_hex, mqtt_password)

    def close(self) -> None:
        """Close the store if this gate opened it (a shared one is closed by its owner)."""
        if self._owned:
            self._store.close()

    def accept(self, payload: bytes, now: datetime) -> Command:
        """The verified command, its id now consumed; :class:`CommandRejected` otherwise."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        if len(payload) > MAX_COMMAND_BYTES:
            raise CommandRejected(f"command of {len(payload)} bytes exceeds {MAX_COMMAND_BYTES}")
        try:
            data = load_json(payload)
        except ProtocolError as exc:
            raise CommandRejected(exc.reason) from exc
        if not isinstance(data, dict):
            raise CommandRejected("command is not a JSON object")
        raw_id = data.get("id")
        command_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 64 else None
        if SIGNATURE_FIELD not in data:
            raise CommandRejected("unsigned command", command_id)
        signed_by = next((k for k in self.credentials.honoured() if verify(data, k)), None)
        if signed_by is None:
            raise CommandRejected("bad signature", command_id)
        try:
            command = validate(data, Command)
        except ProtocolError as exc:
            raise CommandRejected(f"invalid command: {exc.reason}", command_id) from exc
        if command.action not in ACTIONS:
            raise CommandRejected(f"unknown action {command.action!r}", command.id)
        if command.action == "credit":
            credit_state(command)
        self._check_epoch(command)
        if command.expires_at <= now:
            raise CommandRejected(f"expired at {command.expires_at.isoformat()}", command.id)
        if command.issued_at > now + MAX_SKEW:
            raise CommandRejected(
                f"issued at {command.issued_at.isoformat()}, in the future of the gateway clock",
                command.id,
            )
        self._consume(command, now)
        if signed_by == self.credentials.command_key:
            self.credentials.forget_previous()
        return command

    def rotate(self, rotation: Rotation) -> None:
        """Adopt the credentials of a ``rotate`` command (stored before it is acknowledged)."""
        self.credentials.adopt(rotation)

    def _check_epoch(self, command: Command) -> None:
        if command.epoch is not None and self.epoch is not None and command.epoch != self.epoch:
            raise WrongEpoch(
                f"bound to gateway epoch {command.epoch}, not this store's {self.epoch}: "
                "sent before the store started over",
                command.id,
            )
        began = self.began
        if command.epoch is None and began is not None and command.issued_at < began - MAX_SKEW:
            raise WrongEpoch(
                f"issued at {command.issued_at.isoformat()}, before this store began "
                f"({began.isoformat()}), and bound to no epoch",
                command.id,
            )

    def _consume(self, command: Command, now: datetime) -> None:
        grp = COMMAND_GROUPS.get(command.action, command.action)
        issued = _micros(command.issued_at)
        with self._store.transaction() as conn:
            conn.execute(
                "DELETE FROM command_seen WHERE expires_us < ?",
                (_micros(now - KEEP_AFTER_EXPIRY),),
            )
            if conn.execute("SELECT 1 FROM command_seen WHERE id = ?", (command.id,)).fetchone():
                raise CommandReplayed("replayed command id", command.id)
            newest = conn.execute(
                "SELECT issued_us FROM command_latest WHERE meter = ? AND grp = ?",
                (command.meter, grp),
            ).fetchone()
            if newest is not None and int(newest[0]) > issued:
                raise CommandRejected(f"superseded by a newer {grp} command", command.id)
            conn.execute(
                "INSERT INTO command_latest (meter, grp, issued_us) VALUES (?, ?, ?)"
                " ON CONFLICT (meter, grp) DO UPDATE SET issued_us = excluded.issued_us",
                (command.meter, grp, issued),
            )
            conn.execute(
                "INSERT INTO command_seen (id, meter, action, expires_us, accepted_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    command.id,
                    command.meter,
                    command.action,
                    _micros(command.expires_at),
                    now.astimezone(UTC).isoformat(),
                ),
            )


def credit_state(command: Command) -> CreditState:
    """The :class:`CreditState` a ``credit`` command carries: ``params["state"]``, or the params
    themselves when they have no ``state`` key."""
    params: Any = command.params.get("state", command.params)
    try:
        return validate(params, CreditState)
    except ProtocolError as exc:
        raise CommandRejected(f"invalid credit state: {exc.reason}", command.id) from exc


def _micros(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
