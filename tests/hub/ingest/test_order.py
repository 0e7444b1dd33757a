"""The same usage stream published once, twice, and shuffled: the ledger ends identical.

The tariff has inclining blocks and a time-of-use window and the stream crosses a month end,
so a record's charge depends on the records before it: only seq-ordered rating (records held
until their predecessors arrive) makes the outcome independent of arrival order.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from hub.db import make_engine, migrate, read_tx
from hub.ingest import IngestService
from hub.ledger import check_invariants
from tests.conftest import Broker
from tests.hub.ingest.helpers import balances, count, entries, posted, publisher, records_for
from tests.hub.seed import seed_world
from tests.support import wait_for

TARIFF: dict[str, Any] = {
    "id": "ibt-tou",
    "currency": "USD",
    "timezone": "Africa/Johannesburg",
    "components": [
        {"provider": "gen", "blocks": [{"up_to": "1", "price": "0.0731"},
                                       {"up_to": "3", "price": "0.1379"},
                                       {"price": "0.2113"}]},
        {"provider": "grid", "per_kwh": "0.0417",
         "tou": [{"start": "17:00", "end": "21:00", "price": "0.0933"}]},
        {"provider": "retail", "per_kwh": "0.0133"},
        {"provider": "tax", "tax_rate": "0.15"},
    ],
}  # fmt: skip


def _stream() -> list[tuple[str, dict[str, Any]]]:
    rng = random.Random(7)
    out: list[tuple[str, dict[str, Any]]] = []
    for g in range(2):
        for m in range(2):
            meter = f"gw-{g}-m{m}"
            out += [(f"gw-{g}", r) for r in records_for(meter, 40, rng=rng)]
    return out


def _fresh(tmp_path: Path, name: str) -> Engine:
    url = f"sqlite:///{tmp_path / name}"
    migrate(url)
    engine = make_engine(url)
    seed_world(engine, gateways=2, meters_per_gateway=2, tariff=TARIFF)
    return engine


def test_once_twice_and_shuffled_give_the_same_ledger(
    tmp_path: Path, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    stream = _stream()
    once, shuffled = _fresh(tmp_path, "once.db"), _fresh(tmp_path, "shuffled.db")
    try:
        a = start_service(once, client_id="hub-once", batch_size=50)
        with publisher(mosquitto.port) as pub:
            for gateway, record in stream:
                pub.usage(gateway, [record])
            wait_for(lambda: posted(once) == len(stream), timeout=30)
        a.stop()

        b = start_service(shuffled, client_id="hub-shuffled", batch_size=7)
        rng = random.Random(11)
        replay = stream + stream
        rng.shuffle(replay)
        with publisher(mosquitto.port) as pub:
            # some records travel alone, some in small batches, all out of order
            i = 0
            while i < len(replay):
                n = rng.choice([1, 1, 2, 5])
                by_gateway: dict[str, list[dict[str, Any]]] = {}
                for gateway, record in replay[i : i + n]:
                    by_gateway.setdefault(gateway, []).append(record)
                for gateway, records in by_gateway.items():
                    pub.usage(gateway, records)
                i += n
            wait_for(lambda: posted(shuffled) == len(stream), timeout=30)
            wait_for(lambda: b.counters["duplicates"] == len(stream))
            wait_for(lambda: b.idle and count(shuffled, "usage_pending") == 0)
        assert b.counters["held"] > 0, "the shuffle must have made the hub hold records"
        assert balances(shuffled) == balances(once)
        assert entries(shuffled) == entries(once)
        assert count(shuffled, "journal_lines") == count(once, "journal_lines")
        for engine in (once, shuffled):
            with read_tx(engine) as conn:
                report = check_invariants(conn)
            assert report["ok"], report
    finally:
        once.dispose()
        shuffled.dispose()
