"""Signature verifiers and their configuration (pure): HMAC-SHA256 and Ed25519 over the raw
body, keys in hex or base64, and settings that refuse what cannot work."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import ValidationError

from hub.payments.settings import PaymentSettings
from hub.payments.verify import SignatureVerifier, UrlVerifier, VerifierConfig, build

BODY = b'{"reference": "RF18SMSA2026000001", "amount": "12.50"}'


def test_hmac_signature() -> None:
    verifier = build("billpay:bpay", VerifierConfig(kind="hmac", secret="s3cret"))
    assert isinstance(verifier, SignatureVerifier) and verifier.name == "hmac:billpay:bpay"
    good = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert verifier.check(BODY, good) and verifier.check(BODY, "sha256=" + good.upper())
    assert not verifier.check(BODY + b" ", good)
    assert not verifier.check(BODY, None) and not verifier.check(BODY, "zz")


def test_ed25519_signature_with_a_base64_key() -> None:
    signer = Ed25519PrivateKey.generate()
    raw = signer.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    config = VerifierConfig(kind="ed25519", public_key=base64.b64encode(raw).decode())
    verifier = build("billpay:bbps", config)
    assert isinstance(verifier, SignatureVerifier)
    signature = signer.sign(BODY)
    assert verifier.check(BODY, signature.hex())
    assert verifier.check(BODY, base64.b64encode(signature).decode())
    assert not verifier.check(BODY.replace(b"12.50", b"99.50"), signature.hex())
    assert not verifier.check(BODY, "not a signature!")


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        build("billpay:x", VerifierConfig(kind="ed25519", public_key="abcd"))
    with pytest.raises(ValueError, match="http"):
        build("billpay:x", VerifierConfig(kind="url", url="ftp://example"))
    with pytest.raises(ValidationError, match="a url"):
        PaymentSettings(payment_verifiers={"callback:mpesa": {"kind": "hmac", "secret": "s"}})
    with pytest.raises(ValidationError, match="billpay:<id>"):
        PaymentSettings(payment_verifiers={"bbps": {"kind": "url", "url": "http://127.0.0.1:1/"}})
    settings = PaymentSettings(
        payment_verifiers={"callback:mpesa": {"kind": "url", "url": "http://127.0.0.1:1/c"}}
    )
    assert isinstance(settings.verifier("callback:mpesa"), UrlVerifier)
    assert settings.verifier("billpay:none") is None
