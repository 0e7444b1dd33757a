"""The gateway's credentials as the hub rotates them (a ``rotate`` command, issue 15 item 5).

The configuration gives the first command key and MQTT password. A ``rotate`` command (signed
with the key it replaces) carries new ones: they are stored in the agent's SQLite file in one
transaction before the command is acknowledged, so a restart keeps them, and they win over the
configuration for as long as the configured key is the one they were rotated from (an operator
who provisions the gateway anew with another key starts over from it). The key replaced stays
honoured, for commands and receipts the hub signed before it heard the acknowledgement, until
the first command signed with the new key arrives: from then the hub signs with the new one.
"""

from __future__ import annotations

from agent.store import AgentStore
from protocol.messages import Rotation

_SCHEMA = "CREATE TABLE IF NOT EXISTS credentials (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


class Credentials:
    """The command keys honoured (current first, then the one it replaced) and the MQTT
    password for the next connection."""

    def __init__(self, store: AgentStore, command_key: str, mqtt_password: str | None) -> None:
        self._store = store
        with store.transaction() as conn:
            conn.execute(_SCHEMA)
            stored = dict(conn.execute("SELECT name, value FROM credentials").fetchall())
        if stored.get("configured") not in (None, command_key):
            stored = {}  # provisioned anew: the configuration wins
        self.command_key: str = stored.get("command_key", command_key)
        self.previous_key: str | None = stored.get("previous_key")
        self.mqtt_password: str | None = stored.get("mqtt_password", mqtt_password)
        self._configured = stored.get("configured", command_key)

    def honoured(self) -> tuple[str, ...]:
        return (self.command_key,) if self.previous_key is None else (
            self.command_key, self.previous_key)  # fmt: skip

    def adopt(self, rotation: Rotation) -> None:
        """Store the new credentials durably, keeping the replaced key honoured."""
        rows = {
            "configured": self._configured,
            "command_key": rotation.command_key,
            "previous_key": self.command_key,
            "mqtt_password": rotation.mqtt_password or self.mqtt_password,
        }
        self._write(rows)
        self.previous_key, self.command_key = self.command_key, rotation.command_key
        self.mqtt_password = rows["mqtt_password"]

    def forget_previous(self) -> None:
        """The hub signs with the current key now: the replaced one is honoured no more."""
        if self.previous_key is None:
            return
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM credentials WHERE name = 'previous_key'")
        self.previous_key = None

    def _write(self, rows: dict[str, str | None]) -> None:
        with self._store.transaction() as conn:
            conn.execute("DELETE FROM credentials")
            conn.executemany(
                "INSERT INTO credentials (name, value) VALUES (?, ?)",
                [(k, v) for k, v in rows.items() if v is not None],
            )
