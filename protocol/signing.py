"""HMAC-SHA256 signatures over the canonical JSON of a command (everything but ``sig``)."""

import hashlib
import hmac
import json
import secrets
from typing import Any

SIGNATURE_FIELD = "sig"


def new_key() -> str:
    """A fresh 256-bit command key, hex."""
    return secrets.token_hex(32)


def canonical(payload: dict[str, Any]) -> bytes:
    body = {k: v for k, v in payload.items() if k != SIGNATURE_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(payload: dict[str, Any], key_hex: str) -> str:
    return hmac.new(bytes.fromhex(key_hex), canonical(payload), hashlib.sha256).hexdigest()


def signed(payload: dict[str, Any], key_hex: str) -> dict[str, Any]:
    """A copy of ``payload`` carrying its signature."""
    return {**payload, SIGNATURE_FIELD: sign(payload, key_hex)}


def verify(payload: dict[str, Any], key_hex: str) -> bool:
    """True only if ``payload`` carries a valid signature made with ``key_hex``. A payload
    that has no canonical form (a string with a lone surrogate) or a signature that is not
    ASCII carries none."""
    sig = payload.get(SIGNATURE_FIELD)
    if not isinstance(sig, str) or not sig.isascii():
        return False
    try:
        expected = sign(payload, key_hex)
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(sig, expected)
