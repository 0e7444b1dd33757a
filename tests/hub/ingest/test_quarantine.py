"""Bad messages are quarantined with a reason, counted, and change nothing; the hub keeps
consuming: a good message after them is posted."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import Engine, select

from hub.db import read_tx
from hub.ingest import IngestService
from protocol.messages import MAX_PAYLOAD
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import (
    balances,
    entries,
    posted,
    publisher,
    quarantined,
    records_for,
    table,
    usage,
)
from tests.hub.seed import World
from tests.support import wait_for


def test_bad_messages_are_quarantined_and_consuming_goes_on(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    meters = list(world.meters.items())
    (meter, gateway), (other_meter, other_gateway) = meters[0], meters[-1]
    assert gateway != other_gateway
    service = start_service(sqlite_engine)
    before = balances(sqlite_engine), entries(sqlite_engine)
    # the mean current (protocol extension, issue 19): stored with the posted usage
    good = [
        dict(r, current_mean_a=[9.153, 0.0, 60][i]) for i, r in enumerate(records_for(meter, 3))
    ]
    wrong_type = dict(good[0], seq="one")
    backwards = dict(good[0], import_end=good[0]["import_start"] - 1)
    bad: list[tuple[str, bytes, str]] = [
        (topic(gateway, "usage"), b"{not json", "not JSON"),
        (topic(gateway, "usage"), b"[" * (MAX_PAYLOAD + 1), "exceeds"),
        (topic(gateway, "usage"), usage([wrong_type]), "records.0.seq"),
        (topic(gateway, "usage"), usage([backwards]), "import_end is below import_start"),
        (
            topic(gateway, "usage"),
            usage([dict(good[0], current_mean_a=-1.5)]),
            "records.0.current_mean_a: Input should be greater than or equal to 0",
        ),
        (
            topic(gateway, "usage"),
            usage([dict(good[0], current_mean_a="9.1")]),
            "records.0.current_mean_a: Input should be a valid number",
        ),
        (topic(gateway, "usage"), json.dumps({"v": 2, "records": good}).encode(), "v:"),
        (topic(gateway, "usage"), usage([dict(good[0], meter="nobody")]), "unknown meter"),
        (topic(other_gateway, "usage"), usage(good[:1]), "does not own meter"),
        (topic(gateway, "events"), _event_for(other_meter, good[0]["end"]), "does not own meter"),
        (topic(gateway, "status"), b'{"state": "sleepy"}', "state"),
    ]
    with publisher(mosquitto.port) as pub:
        for name, payload, _ in bad:
            pub.send(name, payload)
        wait_for(lambda: len(quarantined(sqlite_engine)) == len(bad))
        assert (balances(sqlite_engine), entries(sqlite_engine)) == before
        wait_for(lambda: service.counters["quarantined"] == len(bad))
        reasons = quarantined(sqlite_engine)
        for (name, _, expected), (q_topic, reason) in zip(
            sorted(bad, key=lambda b: b[2]),
            sorted(reasons, key=lambda r: _key(r, bad)),
            strict=True,
        ):
            assert expected in reason, (expected, reason)
            assert q_topic == name
        pub.usage(gateway, good)
        wait_for(lambda: posted(sqlite_engine) == 3)
    wait_for(lambda: service.counters["posted"] == 3)
    assert currents(sqlite_engine, meter) == [9.153, 0.0, 60.0]


def currents(engine: Engine, meter: str) -> list[float | None]:
    p = table("posted_usage")
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(p.c.current_mean_a).where(p.c.meter_id == meter).order_by(p.c.seq)
        )
        return [r[0] for r in rows]


def _event_for(meter: str, at: str) -> bytes:
    event = {"id": "e1", "kind": "relay_off", "at": at, "meter": meter}
    return json.dumps({"v": 1, "events": [event]}).encode()


def _key(row: tuple[str, str], bad: list[tuple[str, bytes, str]]) -> str:
    """Sort quarantine rows by the expectation they match, to pair them with ``bad``."""
    for _, _, expected in bad:
        if expected in row[1]:
            return expected
    return row[1]
