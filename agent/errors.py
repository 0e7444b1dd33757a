"""Error hierarchy of the edge agent: one root, typed subclasses."""

from __future__ import annotations

from pathlib import Path


class AgentError(Exception):
    """Root of every error the agent raises on purpose."""


class ConfigError(AgentError):
    """The configuration file is invalid; `key` names the offending key."""

    def __init__(self, path: str, key: str, message: str) -> None:
        self.path = path
        self.key = key
        self.message = message
        super().__init__(f"{path}: {key}: {message}")


class BusError(AgentError):
    """A Modbus request failed (timeout, exception response, lost connection, bad frame)."""

    def __init__(self, bus: str, unit: int, kind: str, detail: str = "") -> None:
        self.bus = bus
        self.unit = unit
        self.kind = kind
        self.detail = detail
        super().__init__(f"bus {bus} unit {unit}: {kind}{': ' + detail if detail else ''}")


class RelayError(AgentError):
    """A relay could not be switched or read back."""

    def __init__(self, meter_id: str, detail: str) -> None:
        self.meter_id = meter_id
        self.detail = detail
        super().__init__(f"relay of meter {meter_id}: {detail}")


class CommandRejected(AgentError):  # noqa: N818 (agreed interface name)
    """A hub command was refused (bad signature, expired, replayed, malformed, unknown action)."""

    def __init__(self, reason: str, command_id: str | None = None) -> None:
        self.reason = reason
        self.command_id = command_id
        super().__init__(reason if command_id is None else f"command {command_id}: {reason}")


class CommandReplayed(CommandRejected):
    """A command id the gate already accepted came again: a QoS 1 redelivery, the hub sending
    it again because the acknowledgement has not reached it yet, or a replay. Not applied
    again; the agent acknowledges it again so the hub can stop sending it."""


class WrongEpoch(CommandRejected):
    """A command bound to another store epoch than this gateway's (sent before its store was
    lost and made anew: a replay, or the hub's own command from before it heard the new epoch,
    which it sends again bound to this one)."""


class StoreError(AgentError):
    """The local SQLite store cannot be opened or written; ``path`` names the file."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"local store {path}: {detail}")
