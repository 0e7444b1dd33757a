"""Gateway credentials: the MQTT password hash in Mosquitto's password-file format.

Mosquitto 2.0 ``password_file`` lines are ``user:$7$<iterations>$<salt b64>$<hash b64>``
with PBKDF2-HMAC-SHA512 over the password, a 12-byte salt and a 64-byte hash (what
``mosquitto_passwd`` writes). Storing that exact string lets the hub export the broker's
password file (``smsa-hub mosquitto-config``, ``smsa-hub mqtt-passwd``) while never keeping
the password itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

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
