"""Signed commands to a gateway (contract section 4): build, sign, address.

A command is a ``protocol.messages.Command`` as a dict, signed with HMAC-SHA256 over its
canonical JSON with the gateway's ``command_key``; the agent verifies it, acts at most once per
id, and ignores it after ``expires_at``. Pure: no MQTT here, ``topic_for`` says where it goes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from protocol.messages import ACTIONS, Command, CreditState, validate
from protocol.signing import signed
from protocol.topics import topic

DEFAULT_TTL = timedelta(hours=1)


def build_command(
    key_hex: str,
    meter: str,
    action: str,
    *,
    params: dict[str, Any] | None = None,
    reason: str = "",
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
    command_id: str | None = None,
) -> dict[str, Any]:
    """A signed command dict, validated against the protocol's ``Command`` model."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    issued = (now or datetime.now(UTC)).astimezone(UTC)
    body: dict[str, Any] = {
        "v": 1,
        "id": command_id or uuid.uuid4().hex,
        "meter": meter,
        "action": action,
        "issued_at": issued.isoformat(),
        "expires_at": (issued + ttl).isoformat(),
        "reason": reason[:500],
        "params": params or {},
    }
    command = signed(body, key_hex)
    validate(command, Command)  # refuses a malformed command before it leaves the hub
    return command


def credit_command(
    key_hex: str,
    meter: str,
    state: CreditState,
    *,
    reason: str = "credit state",
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``credit`` command carrying ``state`` as its params."""
    params = state.model_dump(mode="json", exclude_none=True)
    return build_command(key_hex, meter, "credit", params=params, reason=reason, ttl=ttl, now=now)


def topic_for(gateway: str) -> str:
    return topic(gateway, "cmd")
