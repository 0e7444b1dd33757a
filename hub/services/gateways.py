"""Rotating a gateway's credentials (``POST /gateways/{id}/rotate``, issue 15 item 5).

A new command key and MQTT password are made and kept as the gateway's ``next_*`` (the
password as its Mosquitto hash only); a ``rotate`` command carrying both, signed with the
CURRENT key, is queued for the gateway (addressed to one of its meters, as every command is).
The agent stores them durably and acknowledges (``agent/credentials.py``); on that
acknowledgement the hub switches (``hub.commands.store.adopt_rotation``). Until then it signs
commands and receipts with the old key, so nothing in flight is refused; after it, a command
queued under the old key is signed again with the new one when published. The agent honours
the old key until the first command under the new one. The broker's password file is written
from the database (``smsa-hub mosquitto-config`` / ``mqtt-passwd``): run it, and reload
Mosquitto, after the switch; the agent uses the new password from its next connection.

A second rotation while one is open (queued or sent) is refused (409): the gateway would
otherwise acknowledge a key the hub no longer expects. Audited as a ``gateway_rotated`` event
(``hub.audit``; the secrets are never written).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlmodel import Session

from hub.audit import GATEWAY_ROTATED, record_change
from hub.commands.store import enqueue
from hub.control.commands import build_command
from hub.errors import ConflictError, NotFoundError
from hub.gateways import mosquitto_hash, new_password
from hub.models import Command, Gateway, Meter, table
from hub.models.commands import OPEN
from protocol.signing import new_key

_commands = table(Command)
_meters = table(Meter)


@dataclass(frozen=True)
class Rotated:
    gateway_id: str
    command_id: str
    command_key: str
    mqtt_password: str


def rotate(session: Session, gateway_id: str, *, key_id: int, ttl: timedelta) -> Rotated:
    """Queue the rotation in the caller's transaction; the new secrets (shown once)."""
    gateway = session.get(Gateway, gateway_id)
    if gateway is None:
        raise NotFoundError("gateway", gateway_id)
    conn = session.connection()
    open_rotation = conn.execute(
        select(_commands.c.id).where(_commands.c.gateway_id == gateway_id,
                                     _commands.c.action == "rotate",
                                     _commands.c.status.in_(OPEN))
    ).first()  # fmt: skip
    if open_rotation is not None:
        raise ConflictError(f"gateway {gateway_id!r} has a rotation not yet acknowledged "
                            f"(command {open_rotation.id})")  # fmt: skip
    meter = conn.execute(
        select(_meters.c.id).where(_meters.c.gateway_id == gateway_id).order_by(_meters.c.id)
    ).scalar()
    if meter is None:
        raise ConflictError(f"gateway {gateway_id!r} has no meter to address a command to")
    key, password = new_key(), new_password()
    params = {"command_key": key, "mqtt_password": password}
    command = build_command(gateway.command_key, meter, "rotate", params=params,
                            reason="credential rotation", ttl=ttl)  # fmt: skip
    gateway.next_command_key = key
    gateway.next_mqtt_password_hash = mosquitto_hash(password)
    session.add(gateway)
    session.flush()
    command_id = enqueue(conn, gateway_id, command)
    changed = {"command_key": {"from": "current", "to": "rotating"},
               "mqtt_password": {"from": "current", "to": "rotating"}}  # fmt: skip
    record_change(session, GATEWAY_ROTATED, key_id=key_id, subject=("gateway", gateway_id),
                  changed=changed)  # fmt: skip
    return Rotated(gateway_id, command_id, key, password)
