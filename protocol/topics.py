"""MQTT topics (contract section 4): ``smsa/v1/gw/{gateway}/{status|usage|events|cmd|receipt}``."""

import re

PREFIX = "smsa/v1"
KINDS = ("status", "usage", "events", "cmd", "receipt")
# The hub's presence, retained: ``{"v": 1, "state": "online"|"offline", "at": ...}``. A gateway
# sends everything the hub has not confirmed again when the hub comes (back) online.
HUB_STATUS = f"{PREFIX}/hub/status"
_GATEWAY = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TOPIC = re.compile(rf"^{re.escape(PREFIX)}/gw/([^/]+)/({'|'.join(KINDS)})$")


def topic(gateway: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    if not _GATEWAY.match(gateway):
        raise ValueError(f"gateway id {gateway!r} is not usable in a topic")
    return f"{PREFIX}/gw/{gateway}/{kind}"


def subscription(kind: str) -> str:
    """The wildcard subscription for one kind from every gateway."""
    return f"{PREFIX}/gw/+/{kind}"


def parse(name: str) -> tuple[str, str]:
    """``(gateway, kind)`` of a topic; ValueError for a topic outside the contract."""
    match = _TOPIC.match(name)
    if not match or not _GATEWAY.match(match.group(1)):
        raise ValueError(f"topic {name!r} is not an SMSA topic")
    return match.group(1), match.group(2)


def valid_gateway_id(gateway: str) -> bool:
    return bool(_GATEWAY.match(gateway))
