"""The broker's files, written by ``smsa-hub mosquitto-config`` (CONTRACT.md section 1).

``passwd`` (Mosquitto ``password_file``): one line per gateway, user name = gateway id, with the
hash the hub stored at ``POST /gateways``, and one line for the hub's own user (name and
password of ``--mqtt``). ``acl`` (``acl_file``): a gateway publishes only under its own
``smsa/v1/gw/{id}/`` (status, usage, events) and reads only its own hub-to-gateway topics
(cmd, receipt); the hub reads every gateway's topics and writes every hub-to-gateway topic.
``mosquitto.conf``: the options of hardware/mosquitto/smsa.conf (no anonymous access,
persistence, the QoS 1 queue policy) and its listeners, each with
``use_username_as_clientid true``, so that a session belongs to a user name and no login can
disconnect, take over or wipe another client's session by asking for its client id.

The shipped hardware/mosquitto/smsa.conf and acl are what this module writes for the hub user
``smsa-hub`` (tests/hardware/test_deploy_files.py compares them).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from protocol.topics import HUB_STATUS, PREFIX

# Topic kinds (protocol.topics.KINDS) by direction.
GATEWAY_PUBLISHES = ("status", "usage", "events")
HUB_PUBLISHES = ("cmd", "receipt")

# Mosquitto substitutes no %u containing "+", "#" or "/"; ":" would end the password-file name.
_USER = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# The QoS 1 backlog policy of hardware/mosquitto/smsa.conf (see its comments and
# hardware/README.md section 10 for the sizing).
QUEUE_OPTIONS = (
    ("max_queued_messages", "0"),
    ("max_queued_bytes", "268435456"),
    ("queue_qos0_messages", "false"),
)
DEFAULT_CERTS = "/etc/mosquitto/certs"


class BrokerConfigError(ValueError):
    """The files cannot be written as asked; the message is one line."""


@dataclass(frozen=True)
class Listener:
    port: int
    host: str | None  # None: every interface
    tls: bool


def valid_user(name: str) -> bool:
    return bool(_USER.match(name))


def password_file(hub: tuple[str, str], gateways: Iterable[tuple[str, str]]) -> str:
    """``user:hash`` lines: the hub's user first, then every gateway. A gateway that has the
    hub's user name is refused (it would be the hub, to the broker)."""
    hub_user, hub_hash = hub
    lines = [f"{hub_user}:{hub_hash}"]
    for user, digest in gateways:
        if user == hub_user:
            raise BrokerConfigError(
                f"gateway {user!r} has the hub's MQTT user name; delete that gateway or give "
                "the hub another user name in --mqtt"
            )
        if not valid_user(user):
            raise BrokerConfigError(f"gateway user name {user!r} is not usable by Mosquitto")
        lines.append(f"{user}:{digest}")
    return "\n".join(lines) + "\n"


def acl_file(hub_user: str) -> str:
    gw = f"{PREFIX}/gw"
    lines = [
        "# SMSA topic access (Mosquitto acl_file), written by smsa-hub mosquitto-config.",
        "#",
        "# %u is the connected client's user name; for a gateway that is its gateway id. The",
        "# listeners set use_username_as_clientid, so it is also the client id. Pattern lines",
        "# apply to every user, the hub included: no gateway may have the hub's user name.",
        "",
        "# A gateway publishes only under its own topics (status is also its Last Will, checked",
        "# against this list at CONNECT) and reads only the hub's messages to it.",
        *(f"pattern write {gw}/%u/{kind}" for kind in GATEWAY_PUBLISHES),
        *(f"pattern read {gw}/%u/{kind}" for kind in HUB_PUBLISHES),
        "# Every gateway reads the hub's retained presence (it resends what is unconfirmed).",
        f"pattern read {HUB_STATUS}",
        "",
        "# The hub: reads everything the gateways publish, writes to any gateway, and reads the",
        "# broker's statistics ($SYS/broker/publish/messages/dropped).",
        f"user {hub_user}",
        f"topic read {gw}/+/#",
        *(f"topic write {gw}/+/{kind}" for kind in HUB_PUBLISHES),
        f"topic write {HUB_STATUS}",
        "topic read $SYS/broker/#",
    ]
    return "\n".join(lines) + "\n"


def listener_lines(listener: Listener, certs: str) -> list[str]:
    where = f"{listener.port} {listener.host}" if listener.host else f"{listener.port}"
    lines = [f"listener {where}", "use_username_as_clientid true"]
    if listener.tls:
        lines += [
            f"cafile {certs}/ca.crt",
            f"certfile {certs}/server.crt",
            f"keyfile {certs}/server.key",
            "tls_version tlsv1.2",
        ]
    return lines


def config_file(conf_dir: str, listeners: Sequence[Listener], certs: str = DEFAULT_CERTS) -> str:
    """mosquitto.conf naming ``conf_dir``/passwd and ``conf_dir``/acl. A drop-in for the
    packaged /etc/mosquitto/mosquitto.conf (which sets persistence_location and log_dest); to
    run it alone, add ``persistence_location``."""
    if not listeners:
        raise BrokerConfigError("no listener")
    lines = [
        "# SMSA broker configuration for Mosquitto 2.0, written by smsa-hub mosquitto-config.",
        "# The commented reference is hardware/mosquitto/smsa.conf.",
        "allow_anonymous false",
        f"password_file {conf_dir}/passwd",
        f"acl_file {conf_dir}/acl",
        "persistence true",
        "autosave_interval 60",
        *(f"{key} {value}" for key, value in QUEUE_OPTIONS),
        "persistent_client_expiration 30d",
        "",
        "# use_username_as_clientid is per listener: a session belongs to a user name.",
    ]
    for listener in listeners:
        lines += ["", *listener_lines(listener, certs)]
    return "\n".join(lines) + "\n"


def listeners_for(host: str, port: int, tls: bool, tls_port: int | None) -> list[Listener]:
    """The listener the hub's URL reaches (plain: bound to its host; TLS: every interface),
    and a TLS listener for gateways on ``tls_port`` if that is another port."""
    listeners = [Listener(port, None if tls else host, tls)]
    if tls_port is not None and tls_port != port:
        listeners.append(Listener(tls_port, None, True))
    return listeners


def write_files(out: Path, files: dict[str, str]) -> None:
    """Each file replaced atomically (a broker reloading meanwhile reads the old or the new
    one); the password file is readable by its owner only."""
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(tmp, 0o600 if name == "passwd" else 0o644)
            os.replace(tmp, out / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
