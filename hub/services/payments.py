"""Payment-provider callbacks: HMAC-SHA256 over the raw body, a timestamp window, one top-up
per provider transaction id.

The provider signs ``"<X-Timestamp>.<raw body>"`` with its shared secret (hex digest in
``X-Signature``, optionally prefixed ``sha256=``); ``X-Timestamp`` is Unix seconds and must be
within ``payment_window_s`` of the hub's clock. Body (JSON)::

    {"transaction_id": "...", "account": "c1", "amount": "12.50", "currency": "USD"}

A provider's transaction is credited at most once, whatever account a callback names: it is
recorded per (provider, transaction id) in ``payment_transactions``, a namespace of its own
that no API ``Idempotency-Key`` can reach (``hub.ledger.topups``). A provider retries a
callback it got no answer to, so the same callback again (same account, amount and
reference) gets the first answer again (201, the same entry and balance) and moves nothing;
the same transaction id with another account, amount or reference is refused with 409 and
moves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, StringConstraints

from hub.errors import ConflictError, HubError, IdempotencyConflictError, InvalidInputError
from hub.ledger.topups import ProviderTxn, TopupResult
from hub.models import ID_PATTERN
from hub.money import parse_amount
from hub.payments.receive import Source
from hub.payments.settings import PaymentSettings
from hub.payments.verify import UrlVerifier
from hub.services.held import confirm, held
from hub.services.runtime import Runtime
from hub.services.topups import topup
from hub.strictjson import parse_body

MAX_BODY = 16 * 1024


class SignatureError(HubError):
    """A callback that is not provably from the provider, or too old: nothing was done."""

    http_status = 401


class Payment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transaction_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:\-]{1,80}$")]
    account: Annotated[str, StringConstraints(pattern=ID_PATTERN)]
    amount: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,13}(\.[0-9]{1,12})?$")]
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    reference: Annotated[str, StringConstraints(max_length=200)] = ""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    rt: Runtime,
    provider: str,
    body: bytes,
    sig: str | None,
    timestamp: str | None,
    *,
    now: float | None = None,
) -> None:
    secret = rt.settings.payment_secrets.get(provider)
    if secret is None:
        raise SignatureError(f"unknown payment provider {provider!r}")
    if not sig or not timestamp or not timestamp.isdigit():
        raise SignatureError("X-Signature and X-Timestamp (Unix seconds) are required")
    now = time.time() if now is None else now
    if abs(now - int(timestamp)) > rt.settings.payment_window_s:
        raise SignatureError("X-Timestamp outside the accepted window")
    given = sig.removeprefix("sha256=").strip().lower()
    if not hmac.compare_digest(given, signature(secret, timestamp, body)):
        raise SignatureError("bad signature")


def parse(body: bytes) -> Payment:
    return parse_body(body, Payment, MAX_BODY)  # a repeated key: 422 naming it


def handle_callback(
    rt: Runtime, provider: str, body: bytes, sig: str | None, timestamp: str | None
) -> TopupResult | Any:
    """Verify, parse and post one callback (a retry answers the first result again);
    SignatureError, InvalidInputError or ConflictError (the transaction id was credited with
    another account, amount or reference) otherwise, with nothing moved.

    With a url verifier configured for ``callback:<provider>`` (``hub.payments.verify``) the
    payment is held and credited only once the provider's verification URL confirms it; then
    the answer is the payment's row (``status`` pending, refused or credited)."""
    verify(rt, provider, body, sig, timestamp)
    payment = parse(body)
    txn = payment.transaction_id
    reference = payment.reference or f"{provider}:{txn}"
    verifier = PaymentSettings().verifier(f"callback:{provider}")
    if isinstance(verifier, UrlVerifier):
        return _held_callback(rt, provider, payment, reference, verifier)
    signed = (f"hmac-sha256:{provider}", "X-Signature over the body")
    source = Source("callback", f"callback:{provider}:{txn}", verified_by=signed)
    try:
        result = topup(
            rt,
            payment.account,
            payment.amount,
            reference=reference,
            currency=payment.currency,
            payment=ProviderTxn(provider, txn),
            metadata={"payment_provider": provider, "transaction_id": txn},
            received=source,
        )
    except IdempotencyConflictError as exc:
        rt.metrics.inc("payment_conflicts")
        raise ConflictError(
            f"{provider} transaction {txn!r} was already credited by entry {exc.entry_id} "
            "with another account, amount or reference"
        ) from exc
    rt.metrics.inc("payments" if result.created else "payment_replays")
    return result


def _held_callback(
    rt: Runtime, provider: str, payment: Payment, reference: str, verifier: UrlVerifier
) -> Any:
    if payment.currency is not None and payment.currency != rt.currency:
        raise InvalidInputError("currency", f"this hub takes {rt.currency}, not {payment.currency}")
    minor = parse_amount("amount", payment.amount, rt.currency,
                         maximum=rt.settings.max_topup_minor)  # fmt: skip
    txn = payment.transaction_id
    request = {"provider": provider, "transaction_id": txn, "txn": [provider, txn],
               "account": payment.account, "amount": minor, "reference": reference}  # fmt: skip
    row, _ = held(rt, payment.account, minor, Source("callback", f"callback:{provider}:{txn}",
                                                     request))  # fmt: skip
    return confirm(rt, int(row.id), verifier)
