"""Gateway credentials: the MQTT password hash in Mosquitto's password-file format.

Mosquitto 2.0 ``password_file`` lines are ``user:$7$<iterations>$<salt b64>$<hash b64>``
with PBKDF2-HMAC-SHA512 over the password, a 12-byte salt and a 64-byte hash (what
``mosquitto_passwd`` writes). Storing that exact string lets the hub export the broker's
password file (``smsa-hub mosquitto-config``, ``smsa-hub mqtt-passwd``) while never keeping
the password itself.

Gateway ids are MQTT user names, and the broker keys sessions by user name: ids that are, or
could be, the hub's own MQTT users are reserved (:func:`reserved_reason`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import unquote, urlsplit

ITERATIONS = 101  # mosquitto_passwd's default
SALT_BYTES = 12


def new_password() -> str:
    return secrets.token_urlsafe(24)


def mosquitto_hash(
    password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS
) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash."""
    parts = stored.split("$")
    if len(parts) != 5 or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
    except ValueError:
        return False
    expected = mosquitto_hash(password, salt=salt, iterations=int(parts[2]))
    return hmac.compare_digest(expected, stored)


# --- MQTT user names that are not gateways ----------------------------------------------
# The broker binds every client id to its user name (use_username_as_clientid, see
# hardware/mosquitto/smsa.conf), and a gateway's user name is its id: a gateway whose id
# equalled a service user's name would share that user's password-file line, ACL and broker
# session. Service users are named "smsa-..." (the hub's own default "smsa-hub"; further
# hub processes or monitoring logins take other "smsa-" names), so that prefix is refused
# as a gateway id, in any letter case, as is the user name in the hub's own MQTT URL.
HUB_MQTT_USER = "smsa-hub"
RESERVED_PREFIX = "smsa-"


def mqtt_user(url: str) -> str | None:
    """The user name of an ``mqtt://user:password@host`` URL (percent-decoded), or None."""
    username = urlsplit(url).username if url else None
    return unquote(username) if username else None


def reserved_reason(gateway_id: str, hub_user: str | None) -> str | None:
    """Why ``gateway_id`` cannot be a gateway's id (and MQTT user name), or None if it can."""
    if hub_user is not None and gateway_id.lower() == hub_user.lower():
        return f"{gateway_id!r} is the hub's MQTT user name"
    if gateway_id.lower().startswith(RESERVED_PREFIX):
        return f"ids starting with {RESERVED_PREFIX!r} are reserved for the hub's MQTT users"
    return None
