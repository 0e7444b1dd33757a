"""Third-party verification of payments (claim 15): pluggable verifiers, one per bill-payment
network (``billpay:<network>``) or payment provider (``callback:<provider>``), configured in
``SMSA_HUB_PAYMENT_VERIFIERS`` (JSON)::

    {"billpay:bbps": {"kind": "ed25519", "public_key": "<32 bytes, hex>"},
     "billpay:bpay": {"kind": "hmac", "secret": "..."},
     "callback:mpesa": {"kind": "url", "url": "https://psp.example/confirm", "timeout_s": 3}}

A **signature** verifier (``hmac``: HMAC-SHA256 hex digest; ``ed25519``: hex or base64
signature, via ``cryptography``) checks the network's ``X-Signature`` over the raw body before
anything is recorded; a bad one is refused (401) and nothing is kept. A **url** verifier asks the
third party: ``POST url`` with the payment as JSON, answered ``{"confirmed": true}`` (confirmed),
``{"confirmed": false}`` or any 4xx (refused), anything else, a refused connection or no answer
within ``timeout_s`` (unavailable: the payment stays pending and can be verified again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

CONFIRMED, REFUSED, UNAVAILABLE = "confirmed", "refused", "unavailable"


class VerifierConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["hmac", "ed25519", "url"]
    secret: str = ""
    public_key: str = ""
    url: str = ""
    timeout_s: float = Field(default=5.0, gt=0, le=60)


@dataclass(frozen=True)
class Outcome:
    outcome: str  # confirmed | refused | unavailable
    detail: str

    @property
    def confirmed(self) -> bool:
        return self.outcome == CONFIRMED


@dataclass(frozen=True)
class SignatureVerifier:
    """Checks a signature over the raw body (``hmac`` or ``ed25519``)."""

    name: str
    kind: str
    key: bytes

    def check(self, body: bytes, signature: str | None) -> bool:
        if not signature:
            return False
        given = signature.strip().removeprefix("sha256=").removeprefix("ed25519=")
        if self.kind == "hmac":
            expected = hmac.new(self.key, body, hashlib.sha256).hexdigest()
            return hmac.compare_digest(given.lower(), expected)
        raw = _decode(given)
        if raw is None:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.key).verify(raw, body)
        except InvalidSignature:
            return False
        return True


@dataclass(frozen=True)
class UrlVerifier:
    """Asks the third party to confirm a payment, with a timeout."""

    name: str
    url: str
    timeout_s: float

    def confirm(self, claim: dict[str, Any]) -> Outcome:
        try:
            r = httpx.post(self.url, json=claim, timeout=self.timeout_s)
        except httpx.TimeoutException:
            return Outcome(UNAVAILABLE, f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Outcome(UNAVAILABLE, f"{type(exc).__name__}: {exc}"[:300])
        if 400 <= r.status_code < 500:
            return Outcome(REFUSED, f"HTTP {r.status_code}")
        if r.status_code != 200:
            return Outcome(UNAVAILABLE, f"HTTP {r.status_code}")
        try:
            answer = r.json()
        except ValueError:
            return Outcome(UNAVAILABLE, "answer is not JSON")
        if isinstance(answer, dict) and answer.get("confirmed") is True:
            return Outcome(CONFIRMED, str(answer.get("reference", ""))[:200] or "confirmed")
        return Outcome(REFUSED, "the third party did not confirm it")


Verifier = SignatureVerifier | UrlVerifier


def build(name: str, config: VerifierConfig) -> Verifier:
    """The verifier ``config`` describes; ValueError for a key that does not parse."""
    if config.kind == "url":
        if not config.url.startswith(("http://", "https://")):
            raise ValueError(f"{name}: url must be http(s)")
        return UrlVerifier(f"url:{name}", config.url, config.timeout_s)
    if config.kind == "hmac":
        if not config.secret:
            raise ValueError(f"{name}: an hmac verifier needs a secret")
        return SignatureVerifier(f"hmac:{name}", "hmac", config.secret.encode())
    key = _decode(config.public_key)
    if key is None or len(key) != 32:
        raise ValueError(f"{name}: public_key must be 32 bytes, hex or base64")
    return SignatureVerifier(f"ed25519:{name}", "ed25519", key)


def _decode(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
