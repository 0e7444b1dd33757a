"""Issue 14, items 1 and 6: a gateway with valid credentials tries to stall its ingest shard.

Against Mosquitto and the ingest service's own processes (pump, two settlers; ``gw-0`` and
``gw-1`` share settler 0). Each attack is refused at decoding, or isolated to the one record it
is, and the shard goes on posting everyone else's records, also after a restart:

* a record starting in year 1 (its instant cannot even be converted to UTC), sent behind a seq
  gap so that the hub would hold it: refused at validation, never held;
* such a record already in the held table (held by a hub before that validation): quarantined
  and removed from the held table by the release that finds it, with no message to carry it;
* a valid record that fails when it is rated (here: its meter's generation mix names a
  generator that has no provider account): quarantined alone, with its meter and seq, whether it
  was held or came in one message with another meter's record;
* integers longer than Python's 4,300-digit limit (or than any field allows) in usage, events
  and status: refused with a one-line reason like any bad payload, no "internal error".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert

from hub.db import write_tx
from hub.ingest import IngestService
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from protocol.topics import topic
from tests.conftest import Broker
from tests.hub.ingest.helpers import (
    T0,
    Publisher,
    count,
    posted,
    publisher,
    quarantined,
    records_for,
    table,
    usage,
)
from tests.hub.seed import World, seed_world
from tests.support import wait_for

HOLD_S = 0.5
YEAR_ONE = "0001-01-01T00:00:00+01:00"
VICTIMS = ("gw-0-m1", "gw-1-m0", "gw-1-m1")  # meters settled by the attacker's shard


def _poison(seq: int = 3) -> dict[str, Any]:
    """gw-0's own meter, behind a gap (seqs 1 and 2 never sent), starting in year 1."""
    return {**records_for("gw-0-m0", 1, start_seq=seq)[0], "start": YEAR_ONE}


def _send_victims(pub: Publisher, per_meter: int, start_seq: int = 1) -> int:
    """``per_meter`` records of each victim meter, one message each, interleaved."""
    streams = [(m, records_for(m, per_meter, start_seq=start_seq)) for m in VICTIMS]
    for i in range(per_meter):
        for meter, records in streams:
            pub.usage(meter.rsplit("-", 1)[0], [records[i]])
    return per_meter * len(VICTIMS)


def _reasons(engine: Engine) -> list[str]:
    return [reason for _, reason in quarantined(engine)]


def _no_internal_errors(engine: Engine, service: IngestService) -> None:
    reasons = _reasons(engine)
    assert not [r for r in reasons if "internal error" in r], reasons
    assert all(r and "\n" not in r for r in reasons), reasons
    assert service.counters["db_errors"] == 0


def test_a_year_one_record_behind_a_gap_is_refused_and_never_held(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    # long enough to be held (records behind a gap wait ``hold_s``) even by a slow first batch
    service = start_service(sqlite_engine, client_id="hub", hold_s=2.0)

    def settled() -> int:
        return posted(sqlite_engine) + len(quarantined(sqlite_engine))

    with publisher(mosquitto.port) as pub:
        pub.usage("gw-0", [_poison()])
        time.sleep(2.5)  # were it held, it would be due now, in every batch
        sent = _send_victims(pub, 20)
        wait_for(lambda: settled() >= sent + 1, timeout=30)
    assert posted(sqlite_engine) == sent
    assert _reasons(sqlite_engine) == [
        "records.0.start: Input should be greater than or equal to 1970-01-01T00:00:00Z"
    ]
    assert count(sqlite_engine, "usage_pending") == 0
    _no_internal_errors(sqlite_engine, service)
    service.stop()

    again = start_service(sqlite_engine, client_id="hub", hold_s=2.0)
    with publisher(mosquitto.port) as pub:
        more = _send_victims(pub, 2, start_seq=21)
        wait_for(lambda: settled() >= sent + more + 1, timeout=30)
    assert posted(sqlite_engine) == sent + more
    _no_internal_errors(sqlite_engine, again)


def test_an_invalid_record_in_the_held_table_is_quarantined_by_a_release_alone(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    """What a hub before the date validation left in ``usage_pending``: the first release
    (no message in it) removes it and quarantines it, in one transaction, and writes no
    empty quarantine row."""
    text = json.dumps(_poison())
    with write_tx(sqlite_engine) as conn:
        conn.execute(insert(table("usage_pending")), [
            {"meter_id": "gw-0-m0", "seq": 3, "gateway_id": "gw-0", "record": text,
             "received_at": datetime.now(UTC) - timedelta(hours=1)},
        ])  # fmt: skip
    service = start_service(sqlite_engine, hold_s=HOLD_S)
    wait_for(lambda: count(sqlite_engine, "usage_pending") == 0)
    assert quarantined(sqlite_engine) == [
        (
            topic("gw-0", "usage"),
            "held record of meter 'gw-0-m0' seq 3 is invalid: start: Input should be "
            "greater than or equal to 1970-01-01T00:00:00Z",
        )
    ]
    with publisher(mosquitto.port) as pub:
        sent = _send_victims(pub, 20)
        wait_for(lambda: posted(sqlite_engine) == sent, timeout=30)
    _no_internal_errors(sqlite_engine, service)
    assert len(quarantined(sqlite_engine)) == 1


def test_a_record_that_fails_rating_is_quarantined_alone(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    with write_tx(sqlite_engine) as conn:  # gw-0-m0's generation comes from an unknown party
        conn.execute(insert(table("generation_mix")), [
            {"meter_id": "gw-0-m0", "pool": "gen", "start": T0 - timedelta(days=1), "end": None,
             "measured": {"gen-ghost": 1}},
        ])  # fmt: skip
    service = start_service(sqlite_engine, client_id="hub", hold_s=HOLD_S)
    m0 = records_for("gw-0-m0", 5)
    with publisher(mosquitto.port) as pub:
        pub.usage("gw-0", [m0[1]])  # seq 2, behind a gap: held, then released alone, fails
        wait_for(lambda: len(quarantined(sqlite_engine)) == 1)
        assert count(sqlite_engine, "usage_pending") == 0
        # in one message with another meter's record: only gw-0-m0's is refused
        m1 = records_for("gw-0-m1", 1, start_seq=100, t0=T0 + timedelta(days=2))
        pub.usage("gw-0", [m0[2], m1[0]])
        sent = _send_victims(pub, 20) + 1
        wait_for(lambda: posted(sqlite_engine) == sent, timeout=30)
    reasons = _reasons(sqlite_engine)
    assert reasons == [f"meter 'gw-0-m0' seq {s} not rated: KeyError: 'gen-ghost'" for s in (2, 3)]
    _no_internal_errors(sqlite_engine, service)
    service.stop()

    again = start_service(sqlite_engine, client_id="hub", hold_s=HOLD_S)
    with publisher(mosquitto.port) as pub:
        pub.usage("gw-0", [m0[3]])
        more = _send_victims(pub, 2, start_seq=21)
        wait_for(lambda: posted(sqlite_engine) == sent + more, timeout=30)
        wait_for(lambda: len(quarantined(sqlite_engine)) == 3)
    _no_internal_errors(sqlite_engine, again)
    assert count(sqlite_engine, "usage_pending") == 0


def test_huge_integers_anywhere_are_refused_with_a_one_line_reason(
    sqlite_engine: Engine,
    world: World,
    mosquitto: Broker,
    start_service: Callable[..., IngestService],
) -> None:
    service = start_service(sqlite_engine, batch_wait_s=0.2)
    over_python = "9" * 5000  # int() refuses it: a plain ValueError, not a JSONDecodeError
    under_python = "9" * 4000  # parsed by json and by pydantic's fast path alike
    record = records_for("gw-0-m0", 1)[0]
    event = {"id": "e1", "kind": "relay_off", "at": record["end"], "meter": "gw-0-m0"}

    def raw(obj: dict[str, Any], digits: str) -> bytes:
        return json.dumps(obj).replace('"HUGE"', digits).encode()

    usage_topic, events_topic, status_topic = (
        topic("gw-0", k) for k in ("usage", "events", "status")
    )

    def records(**changes: Any) -> dict[str, Any]:
        return {"v": 1, "records": [{**record, **changes}]}

    bad = [
        (usage_topic, raw(records(seq="HUGE"), over_python)),
        (usage_topic, raw(records(tariff_version="HUGE"), under_python)),
        (usage_topic, raw(records(shares={"gen": "HUGE"}), over_python)),
        (events_topic, raw({"v": 1, "events": [{**event, "data": {"n": "HUGE"}}]}, over_python)),
        (status_topic, raw({"v": 1, "state": "online", "n": "HUGE"}, under_python)),
    ]
    with publisher(mosquitto.port) as pub:
        for i, (name, payload) in enumerate(bad):  # among good records, in the same batches
            pub.send(name, payload)
            _send_victims(pub, 1, start_seq=i + 1)
        wait_for(lambda: len(quarantined(sqlite_engine)) == len(bad))
        wait_for(lambda: posted(sqlite_engine) == len(bad) * len(VICTIMS), timeout=30)
    reasons = _reasons(sqlite_engine)
    expected = [f"integer of {n} digits (at most 20)" for n in (5000, 4000, 5000, 5000, 4000)]
    assert sorted(reasons) == sorted(expected)
    _no_internal_errors(sqlite_engine, service)


def test_nul_characters_never_stall_a_postgresql_shard(engine: Engine) -> None:
    """PostgreSQL refuses NUL in text: a payload that is one NUL byte made even its quarantine
    row fail, and ``process`` raised (the settler retried it for ever); an escaped NUL in an
    event failed the event's insert and split the batch. Both are refused with a reason now."""
    seed_world(engine, gateways=1, meters_per_gateway=2)
    now = datetime.now(UTC)
    event = {"id": "e1", "kind": "tamper", "at": now.isoformat(), "reason": "a\u0000b"}
    items = [
        Inbound(topic("gw-0", "usage"), b"\x00", now),
        Inbound(topic("gw-0", "events"), json.dumps({"v": 1, "events": [event]}).encode(), now),
        Inbound(topic("gw-0", "usage"), usage(records_for("gw-0-m1", 1)), now),
    ]
    outcome = BatchProcessor(engine).process(items, now)
    assert (outcome.counts["posted"], outcome.counts["quarantined"]) == (1, 2)
    assert sorted(reason for _, reason in quarantined(engine)) == [
        "a string with a NUL character (\\u0000)",
        "not JSON: Expecting value: line 1 column 1 (char 0)",
    ]
