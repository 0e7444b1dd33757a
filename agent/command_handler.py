"""Hub commands, applied on the engine's thread after :class:`agent.commands.CommandGate`.

``disconnect`` / ``reconnect`` switch the relay and tell the credit book (so the rules do not
undo an operator's cut-off); their event follows only when the relay read back a changed state
(the hub takes it as the relay's state). One that did not read back is acknowledged with
``data.ok`` false (the hub ends it failed) and withdrawn: the agent never carries it out later,
so the relay and the hub's record agree; the operator sends it again. ``credit`` adopts the
``CreditState`` in the params and lets the rules decide at once; ``prompt`` emits a ``prompt``
event; ``resume`` (the gateway's store started over) renumbers the meter's records above the
hub's (``agent/resume.py``); ``rotate`` stores the gateway's new command key and MQTT password
(``agent/credentials.py``). Every applied command is acknowledged with ``command_ack``, every
refused one reported as ``command_rejected`` (``data.epoch_mismatch`` when it was bound to
another store epoch: the hub sends its own again, bound to this one); a replayed id is
acknowledged again, not applied.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any, Protocol

from agent.commands import credit_state
from agent.errors import CommandRejected, CommandReplayed, WrongEpoch
from agent.relay_rules import Switch
from protocol.errors import ProtocolError
from protocol.messages import Command, CreditState, ResumePoint, Rotation, load_json, validate

log = logging.getLogger(__name__)


class GateLike(Protocol):
    def accept(self, payload: bytes, now: datetime) -> Command: ...
    def rotate(self, rotation: Rotation) -> None: ...


class CreditCommands(Protocol):
    def apply(
        self, meter_id: str, state: CreditState, issued_at: datetime | None = None
    ) -> Any: ...
    def set_relay(
        self, meter_id: str, relay: Any, by_rules: bool = False, since: datetime | None = None
    ) -> None: ...


class Actuator(Protocol):
    """What a command may do to the meters (the engine)."""

    def has_meter(self, meter: str | None) -> bool: ...
    def relay_on(self, meter: str) -> bool | None: ...
    def switch(self, meter: str, switch: Switch) -> bool: ...
    def enforce(self, meter: str, now: datetime) -> None: ...
    def resume(self, meter: str, point: ResumePoint) -> str: ...
    def event(self, kind: str, meter: str | None, reason: str = "", **data: Any) -> None: ...


class CommandHandler:
    """Applies verified commands through ``meters``; counts them for the status."""

    def __init__(self, gate: GateLike, credit: CreditCommands, meters: Actuator) -> None:
        self.gate = gate
        self.credit = credit
        self.meters = meters
        self.commands = 0
        self.rejected = 0

    def handle(self, payload: bytes, now: datetime) -> None:
        self.commands += 1
        try:
            cmd = self.gate.accept(payload, now)
        except CommandReplayed as exc:  # applied before: say so again, do not apply again
            meter = _text(load_json(payload).get("meter"))  # the gate parsed it: a command
            self.meters.event("command_ack", meter if self.meters.has_meter(meter) else None,
                              "already applied", command=exc.command_id, ok=True)  # fmt: skip
            return
        except CommandRejected as exc:
            self._reject(
                payload, exc.reason, exc.command_id, wrong_epoch=isinstance(exc, WrongEpoch)
            )
            return
        if not self.meters.has_meter(cmd.meter):
            self._reject(payload, f"meter {cmd.meter!r} is not on this gateway", cmd.id)
            return
        ok = True
        was = self.meters.relay_on(cmd.meter)
        if cmd.action in ("disconnect", "reconnect"):
            on = cmd.action == "reconnect"
            ok = self.meters.switch(cmd.meter, Switch(on, "command"))  # False: withdrawn
            if ok:
                relay = "connected" if on else "disconnected"
                self.credit.set_relay(cmd.meter, relay, since=cmd.issued_at)
            if ok and was is not on:  # a change: the hub takes these events as relay state
                self.meters.event(cmd.action, cmd.meter, cmd.reason, cause="command",
                                  command=cmd.id)  # fmt: skip
        elif cmd.action == "credit":
            try:
                state = credit_state(cmd)
            except CommandRejected as exc:
                self._reject(payload, exc.reason, cmd.id)
                return
            self.credit.apply(cmd.meter, state, cmd.issued_at)
            self.meters.enforce(cmd.meter, now)
        elif cmd.action == "prompt":
            self.meters.event("prompt", cmd.meter, cmd.reason, command=cmd.id)
        elif cmd.action == "resume":
            try:
                point = validate(cmd.params, ResumePoint)
            except ProtocolError as exc:
                self._reject(payload, f"invalid resume point: {exc.reason}", cmd.id)
                return
            done = self.meters.resume(cmd.meter, point)
            self.meters.event("command_ack", cmd.meter, done, command=cmd.id,
                              action=cmd.action, ok=True)  # fmt: skip
            return
        elif cmd.action == "rotate":
            try:
                rotation = validate(cmd.params, Rotation)
            except ProtocolError as exc:
                self._reject(payload, f"invalid rotation: {exc.reason}", cmd.id)
                return
            self.gate.rotate(rotation)  # stored before the acknowledgement below
        else:
            self._reject(payload, f"unknown action {cmd.action!r}", cmd.id)
            return
        self.meters.event(
            "command_ack",
            cmd.meter,
            "applied" if ok else "relay did not confirm",
            command=cmd.id,
            action=cmd.action,
            ok=ok,
        )

    def _reject(
        self, payload: bytes, reason: str, command_id: str | None, *, wrong_epoch: bool = False
    ) -> None:
        self.rejected += 1
        meter: str | None = None
        try:
            data = json.loads(payload)  # leniently: a huge integer still names the command
            if isinstance(data, dict):
                command_id = command_id or _text(data.get("id"))
                meter = _text(data.get("meter"))
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
            pass
        if not self.meters.has_meter(meter):
            meter = None
        log.warning("command %s rejected: %s", command_id or "?", reason)
        self.meters.event("command_rejected", meter, reason, command=command_id,
                          epoch_mismatch=True if wrong_epoch else None)  # fmt: skip


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None
