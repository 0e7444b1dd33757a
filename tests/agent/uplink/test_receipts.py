"""Rows leave the outbox on the hub's signed receipt only, never on the broker's word.

Real Mosquitto; the receipts are built with ``protocol.receipts`` as the hub builds them.
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.uplink.client import Uplink
from agent.uplink.outbox import Outbox
from protocol.errors import ProtocolError
from protocol.receipts import build_receipt, ranges, split_receipt, verify_receipt
from protocol.signing import sign
from tests.agent.uplink.helpers import KEY, Broker, Subscriber, event, record
from tests.support import wait_for

RECEIPT = "smsa/v1/gw/gw-1/receipt"


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "agent.db", max_rows=1000, resend_after_s=1.0)
    yield box
    box.close()


@pytest.fixture
def silent(broker: Broker) -> Iterator[Subscriber]:
    """A subscriber that receipts nothing: the broker acknowledges, no hub settles."""
    sub = Subscriber(broker, client_id="silent")
    try:
        yield sub
    finally:
        sub.close()


@contextmanager
def started(broker: Broker, outbox: Outbox, records: int) -> Iterator[Uplink]:
    """``records`` usage records of m1 in the outbox, then an uplink draining it, stopped after."""
    for seq in range(1, records + 1):
        outbox.add_usage(record("m1", seq))
    uplink = Uplink("gw-1", broker.url, None, None, outbox, lambda _: None, command_key=KEY,
                    reconnect_delay=(1, 2))  # fmt: skip
    uplink.start()
    try:
        yield uplink
    finally:
        uplink.stop()


def publish(sub: Subscriber, receipt: dict[str, object]) -> None:
    sub.client.publish(RECEIPT, json.dumps(receipt), qos=1).wait_for_publish(5)


def test_broker_ack_alone_deletes_nothing_and_unconfirmed_rows_are_sent_again(
    broker: Broker, silent: Subscriber, outbox: Outbox
) -> None:
    outbox.add_event(event(1))
    with started(broker, outbox, 3) as uplink:
        wait_for(lambda: uplink.broker_acks >= 2, timeout=20)
        assert outbox.depth() == 4
        # no receipt: sent again, identical, after the resend time (1 s, then 2 s)
        wait_for(lambda: uplink.resent_batches >= 2, timeout=20)
        # the counter moves at publish; the subscriber sees the copy a moment later
        wait_for(lambda: [r["seq"] for r in silent.records()].count(1) >= 2, timeout=10)
        assert {r["seq"] for r in silent.records()} == {1, 2, 3}
        first = silent.records()[0]
        assert first["epoch"] == outbox.epoch
        assert all(r == first for r in silent.records() if r["seq"] == 1)
        # the hub's receipt for seqs 1-2 and the event deletes exactly those
        receipt = build_receipt(KEY, "gw-1", at=datetime.now(UTC), epoch=outbox.epoch,
                                usage={"m1": [1, 2]}, events=["ev-1"])  # fmt: skip
        publish(silent, receipt)
        wait_for(lambda: outbox.depth() == 1, timeout=10)
        assert [json.loads(r.body)["seq"] for r in outbox.pending(10)] == [3]
        assert uplink.confirmed_rows == 3


def test_forged_foreign_and_stale_receipts_delete_nothing(
    broker: Broker, silent: Subscriber, outbox: Outbox
) -> None:
    with started(broker, outbox, 5) as uplink:
        wait_for(lambda: uplink.broker_acks >= 1, timeout=20)
        now = datetime.now(UTC)
        everything = {"m1": range(1, 6)}
        genuine = build_receipt(KEY, "gw-1", at=now, epoch=outbox.epoch, usage=everything)
        forged = build_receipt("cd" * 32, "gw-1", at=now, epoch=outbox.epoch, usage=everything)
        tampered = {**genuine, "usage": {"m1": [[1, 5]]}, "gateway": "gw-1", "at": "x"}
        unsigned = {k: v for k, v in genuine.items() if k != "sig"}
        foreign = build_receipt(KEY, "gw-2", at=now, epoch=outbox.epoch, usage=everything)
        old_epoch = build_receipt(KEY, "gw-1", at=now, epoch="0" * 16, usage=everything)
        for bad in (forged, tampered, unsigned, foreign, old_epoch):
            publish(silent, bad)
        silent.client.publish(RECEIPT, b"not json", qos=1).wait_for_publish(5)
        wait_for(lambda: uplink.refused_receipts + uplink.receipts >= 6, timeout=10)
        assert uplink.refused_receipts == 5  # the old epoch's is genuine but confirms nothing
        assert outbox.depth() == 5
        # only rows that were sent can be confirmed: a receipt for an unsent seq deletes nothing
        outbox.add_usage(record("m2", 1))
        # the genuine receipt works once; replaying it afterwards deletes nothing more
        publish(silent, genuine)
        wait_for(lambda: outbox.depth() <= 1, timeout=10)
        publish(silent, genuine)
        wait_for(lambda: uplink.receipts >= 3, timeout=10)
        assert [json.loads(r.body)["meter"] for r in outbox.pending(10)] == ["m2"]


def test_after_a_broker_restart_without_its_sessions_everything_unconfirmed_is_sent_again(
    broker: Broker, outbox: Outbox, tmp_path: Path
) -> None:
    with started(broker, outbox, 50) as uplink:
        wait_for(lambda: uplink.broker_acks >= 1 and outbox.unconfirmed() == 50, timeout=20)
        broker.stop()
        (tmp_path / "mosquitto.db").unlink(missing_ok=True)  # the broker's store, not the outbox
        broker.start()
        hub = Subscriber(broker, client_id="hub", receipt_key=KEY)
        try:
            wait_for(lambda: outbox.depth() == 0, timeout=30)
            assert {r["seq"] for r in hub.records()} == set(range(1, 51))
        finally:
            hub.close()


def test_outbox_at_its_bound_with_unconfirmed_rows_loses_nothing(tmp_path: Path) -> None:
    """Sent rows are never merged; the uplink keeps at most half the bound unconfirmed, so the
    other half is room for merging; every watt-hour survives."""
    box = Outbox(tmp_path / "a.db", max_rows=20)
    try:
        for seq in range(1, 21):
            for meter in ("m0", "m1"):
                box.add_usage(record(meter, seq))
        assert box.depth() <= 20
        sent = box.next_batch(0, box.send_window, 10**6)
        assert len(sent) == 10 and box.unconfirmed() == 10
        for seq in range(21, 201):
            for meter in ("m0", "m1"):
                box.add_usage(record(meter, seq))
        assert box.depth() <= 20
        rows = [json.loads(r.body) for r in box.pending(100)]
        sent_ids = {r.id for r in sent}
        assert {r.id for r in box.pending(100)} >= sent_ids, "a sent row was merged or dropped"
        for meter in ("m0", "m1"):
            mine = sorted((r for r in rows if r["meter"] == meter), key=lambda r: r["seq"])
            wh = sum(r["import_end"] - r["import_start"] for r in mine)
            assert wh == 200 * 10, f"{meter} lost energy"
            assert sum(r["merged"] for r in mine) == 200
    finally:
        box.close()


def test_confirmation_is_atomic_under_concurrent_adds(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "a.db", max_rows=100_000)
    try:
        for seq in range(1, 201):
            box.add_usage(record("m1", seq))
        box.next_batch(0, 200, 10**7)
        adder = threading.Thread(
            target=lambda: [box.add_usage(record("m2", s)) for s in range(1, 201)]
        )
        adder.start()
        receipt = build_receipt(KEY, "gw-1", at=datetime.now(UTC), epoch=box.epoch,
                                usage={"m1": range(1, 201), "m2": range(1, 201)})  # fmt: skip
        confirmed = box.confirm(verify_receipt(json.dumps(receipt).encode(), KEY, "gw-1"))
        adder.join()
        assert confirmed == 200  # m2's rows were never sent: not deleted
        assert box.depth() == 200 and box.unconfirmed() == 0
    finally:
        box.close()


def test_receipt_ranges_and_splitting() -> None:
    assert ranges([7, 1, 2, 3, 3]) == ((1, 3), (7, 7))
    assert ranges([]) == ()
    seqs = range(1, 20_000, 2)  # 10,000 single-seq ranges: over one receipt's limit
    with pytest.raises(ProtocolError):  # one receipt refuses more than its limit
        body = {"v": 1, "type": "receipt", "gateway": "gw-1", "at": datetime.now(UTC).isoformat(),
                "usage": {"m1": [[s, s] for s in seqs]}, "events": []}  # fmt: skip
        body["sig"] = sign(body, KEY)
        verify_receipt(json.dumps(body).encode(), KEY, "gw-1")
    parts = split_receipt(body, KEY)
    assert len(parts) == 3
    covered = set()
    for part in parts:
        receipt = verify_receipt(json.dumps(part).encode(), KEY, "gw-1")
        covered |= {s for lo, hi in receipt.usage["m1"] for s in range(lo, hi + 1)}
    assert covered == set(seqs)
