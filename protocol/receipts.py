"""Delivery receipts (hub → gateway): what the hub has settled, so the gateway may forget it.

A gateway keeps every usage record and event in its outbox until the **hub** says it has
settled it (posted, or quarantined with a reason), not merely when the broker acknowledged the
message. The hub publishes a :class:`Receipt` on ``smsa/v1/gw/{gateway}/receipt`` after each
committed batch, one per gateway and epoch, listing per meter the settled seqs as closed ranges
and the settled event ids. It is signed with the gateway's command key (HMAC-SHA256 over the
canonical JSON, like a command; ``type`` keeps the two apart), so a forged receipt cannot make
a gateway discard data; ``epoch`` names the gateway's outbox the seqs belong to, so a receipt
replayed after the gateway's store was lost and renumbered deletes nothing.

Pure: building, signing, verifying and range arithmetic; no MQTT, no database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, Field, model_validator

from protocol.errors import ProtocolError
from protocol.messages import (
    MAX_BATCH,
    EpochId,
    Message,
    MessageId,
    MeterId,
    load_json,
    validate,
)
from protocol.signing import SIGNATURE_FIELD, signed, verify

Seq = Annotated[int, Field(ge=1, le=2**53)]
MAX_RANGES = 4096  # per receipt, over all meters
RECEIPT_TYPE: Literal["receipt"] = "receipt"


class Receipt(Message):
    """Settled seqs per meter (closed ranges ``[first, last]``) and settled event ids."""

    v: Literal[1] = 1
    type: Literal["receipt"] = "receipt"
    gateway: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
    epoch: EpochId | None = None
    at: AwareDatetime
    usage: dict[MeterId, tuple[tuple[Seq, Seq], ...]] = Field(
        default_factory=dict, max_length=MAX_BATCH
    )
    events: tuple[MessageId, ...] = Field(default=(), max_length=MAX_BATCH * 10)
    sig: str = Field(pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if sum(len(spans) for spans in self.usage.values()) > MAX_RANGES:
            raise ValueError(f"more than {MAX_RANGES} seq ranges")
        if any(lo > hi for spans in self.usage.values() for lo, hi in spans):
            raise ValueError("a seq range ends before it starts")
        return self


def ranges(seqs: Iterable[int]) -> tuple[tuple[int, int], ...]:
    """``seqs`` as the fewest sorted closed ranges: ``{1, 2, 3, 7}`` → ``((1, 3), (7, 7))``."""
    out: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return tuple(out)


def build_receipt(
    key_hex: str,
    gateway: str,
    *,
    at: datetime,
    epoch: str | None = None,
    usage: Mapping[str, Iterable[int]] | None = None,
    events: Iterable[str] = (),
) -> dict[str, Any]:
    """A signed receipt as a dict, validated against :class:`Receipt`."""
    body: dict[str, Any] = {
        "v": 1,
        "type": RECEIPT_TYPE,
        "gateway": gateway,
        "at": at.isoformat(),
        "usage": {m: [list(r) for r in ranges(s)] for m, s in sorted((usage or {}).items())},
        "events": sorted(set(events)),
    }
    if epoch is not None:
        body["epoch"] = epoch
    receipt = signed(body, key_hex)
    validate(receipt, Receipt)
    return receipt


def split_receipt(receipt: dict[str, Any], key_hex: str) -> list[dict[str, Any]]:
    """``receipt`` as one or more signed receipts each within the model's limits (a batch of
    10,000 scattered records could exceed ``MAX_RANGES``)."""
    usage: dict[str, list[list[int]]] = receipt["usage"]
    if sum(len(r) for r in usage.values()) <= MAX_RANGES:
        return [receipt]
    parts: list[dict[str, Any]] = []
    current: dict[str, list[list[int]]] = {}
    size = 0
    for meter, meter_ranges in usage.items():
        for i in range(0, len(meter_ranges), MAX_RANGES):
            chunk = meter_ranges[i : i + MAX_RANGES]
            if size + len(chunk) > MAX_RANGES:
                parts.append(current)
                current, size = {}, 0
            current.setdefault(meter, []).extend(chunk)
            size += len(chunk)
    parts.append(current)
    base = {k: v for k, v in receipt.items() if k not in (SIGNATURE_FIELD, "usage", "events")}
    out = []
    for i, part in enumerate(parts):
        body = {**base, "usage": part, "events": receipt["events"] if i == 0 else []}
        out.append(signed(body, key_hex))
    return out


def verify_receipt(payload: bytes, key_hex: str, gateway: str) -> Receipt:
    """The receipt in ``payload`` if it is well formed, signed with ``key_hex`` and addressed
    to ``gateway``; :class:`ProtocolError` with a one-line reason otherwise."""
    data = load_json(payload)
    if not isinstance(data, dict):
        raise ProtocolError("receipt is not a JSON object")
    if SIGNATURE_FIELD not in data:
        raise ProtocolError("unsigned receipt")
    if not verify(data, key_hex):
        raise ProtocolError("bad receipt signature")
    receipt = validate(data, Receipt)
    if receipt.gateway != gateway:
        raise ProtocolError(f"receipt for gateway {receipt.gateway!r}, not {gateway!r}")
    return receipt
