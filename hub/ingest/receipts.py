"""What a batch settled, gathered per gateway, and the signed receipts that tell the gateways.

A record counts as settled once the batch that posted it (or quarantined it with a reason, or
found it already posted) has committed; a held record is not settled until it is released. The
settler gathers them in a :class:`Settled` while it works and, after the commit, turns them into
one receipt per gateway and epoch (``protocol.receipts``), signed with the gateway's command key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from hub.db import read_tx
from hub.ledger.bulk import select_in
from hub.models import Gateway, table
from protocol import topics
from protocol.messages import UsageRecord
from protocol.receipts import build_receipt, split_receipt

Usage = dict[str | None, dict[str, set[int]]]  # epoch -> meter -> seqs
_gateways = table(Gateway)


@dataclass
class Settled:
    """Per gateway: the usage records (by epoch, meter, seq) and events a batch settled."""

    usage: dict[str, Usage] = field(default_factory=dict)
    events: dict[str, set[str]] = field(default_factory=dict)

    def record(self, gateway: str, record: UsageRecord) -> None:
        by_epoch = self.usage.setdefault(gateway, {})
        by_epoch.setdefault(record.epoch, {}).setdefault(record.meter, set()).add(record.seq)

    def event(self, gateway: str, event_id: str) -> None:
        self.events.setdefault(gateway, set()).add(event_id)

    def update(self, other: Settled) -> None:
        for gateway, by_epoch in other.usage.items():
            for epoch, meters in by_epoch.items():
                for meter, seqs in meters.items():
                    mine = self.usage.setdefault(gateway, {}).setdefault(epoch, {})
                    mine.setdefault(meter, set()).update(seqs)
        for gateway, ids in other.events.items():
            self.events.setdefault(gateway, set()).update(ids)

    def gateways(self) -> list[str]:
        return sorted(set(self.usage) | set(self.events))

    def receipts(self, keys: Mapping[str, str], at: datetime) -> list[tuple[str, bytes]]:
        """(topic, payload) of each signed receipt; a gateway without a key gets none."""
        out: list[tuple[str, bytes]] = []
        for gateway in self.gateways():
            key = keys.get(gateway)
            if not key:
                continue
            by_epoch = self.usage.get(gateway) or {None: {}}
            events = self.events.get(gateway, set())
            for epoch in sorted(by_epoch, key=lambda e: e or ""):
                receipt = build_receipt(key, gateway, at=at, epoch=epoch, usage=by_epoch[epoch],
                                        events=events)  # fmt: skip
                events = set()  # events ride with the first receipt only
                for part in split_receipt(receipt, key):
                    payload = json.dumps(part, separators=(",", ":")).encode()
                    out.append((topics.topic(gateway, "receipt"), payload))
        return out


def command_keys(engine: Engine, gateways: list[str]) -> dict[str, str]:
    """The command key of each of ``gateways`` that exists (read now: keys can be rotated)."""
    if not gateways:
        return {}
    with read_tx(engine) as conn:
        rows = select_in(conn, _gateways, ("id", "command_key"), "id", gateways)
    return {str(gateway): str(key) for gateway, key in rows}
