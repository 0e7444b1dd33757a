"""Hypothesis (issue 14): whatever one gateway sends, the others' records are still posted.

The attacker is ``gw-0`` with valid credentials: usage records with overlaps, register resets,
seq gaps, duplicates and absurd values (instants from year 1 to 9999, intervals ending before
they start or lasting a year, huge and non-finite numbers, integers of thousands of digits,
other gateways' and unknown meters), garbage, events and statuses with such values, over
several batches, the hub's clock moving past the hold time and the processor restarting. The
honest gateways ``gw-1`` and ``gw-2`` send in-order records in the same batches. Then:

* ``BatchProcessor.process`` never raises, and nothing is quarantined as "internal error"
  (every bad record is refused at validation or rated alone);
* every honest record is posted, and nothing is left held once the hold time is over;
* the ledger invariants hold (``check_invariants``), all of them: the attacker's overlapping,
  reset and jumping registers are refused by the register rule (hub.rating.register), so
  neither ``energy`` nor ``energy_follows_register`` finds energy posted twice or skipped.

BatchProcessor runs directly on a real SQLite file (a copy of one seeded database per example).
"""

from __future__ import annotations

import itertools
import json
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from hub.db import make_engine, migrate, read_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import Inbound
from hub.ledger import check_invariants
from protocol.messages import MAX_REGISTER
from protocol.topics import topic
from tests.hub.ingest.helpers import T0, quarantined, records_for, table, usage
from tests.hub.seed import seed_world

HOLD_S = 30.0
ATTACKER = "gw-0"
HONEST = ("gw-1-m0", "gw-1-m1", "gw-2-m0", "gw-2-m1")
TARIFF: dict[str, Any] = {
    "id": "ibt-tou",
    "currency": "USD",
    "timezone": "America/Santiago",
    "components": [
        {"provider": "gen", "blocks": [{"up_to": "1", "price": "0.0731"}, {"price": "0.2113"}]},
        {"provider": "grid", "per_kwh": "0.0417",
         "tou": [{"start": "17:00", "end": "21:00", "price": "0.0933"}]},
        {"provider": "tax", "tax_rate": "0.15"},
    ],
}  # fmt: skip

# Numbers that JSON can carry but no field allows, written into the payload as they are.
RAW = ("9" * 5000, "-" + "9" * 4000, "NaN", "Infinity", "1e999", "1.5", "-0")
INSTANTS = (
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:59:59+00:00",
    "1970-01-01T00:00:00+00:00",
    "2199-12-31T23:00:00+00:00",
    "2199-12-31T23:59:59-14:00",
    "2026-03-31T00:00:00",
    "yesterday",
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, seeded SQLite file, copied for each example."""
    path = tmp_path_factory.mktemp("adversary") / "template.db"
    url = f"sqlite:///{path}"
    migrate(url)
    engine = make_engine(url)
    seed_world(engine, gateways=3, meters_per_gateway=2, tariff=TARIFF)
    engine.dispose()  # the last connection closing checkpoints the WAL into the file
    return path


class Payload:
    """JSON with raw number literals: ``raw(i)`` stands for ``RAW[i]`` in the text."""

    @staticmethod
    def raw(i: int) -> str:
        return f"@@RAW{i}@@"

    @staticmethod
    def encode(obj: Any) -> bytes:
        text = json.dumps(obj)
        for i, literal in enumerate(RAW):
            text = text.replace(f'"{Payload.raw(i)}"', literal)
        return text.encode()


raw_number = st.integers(0, len(RAW) - 1).map(Payload.raw)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=-14)), timezone(timedelta(hours=14))])
instants = st.one_of(st.sampled_from(INSTANTS), st.just(T0.isoformat()))
EDGES = ("1970-01-01T00:00:00+00:00", "2199-12-31T23:00:00+00:00", "2199-12-31T20:00:00-03:00")
ABSURD: dict[str, st.SearchStrategy[Any]] = {
    "meter": st.sampled_from(["gw-1-m0", "nobody", "m/1"]),
    "seq": st.one_of(st.sampled_from([0, -1, 2**53, 2**53 + 1]), raw_number),
    "start": st.sampled_from(INSTANTS),
    "end": st.sampled_from(INSTANTS),
    "span": st.sampled_from([-1, 31 * 86_400 + 1, 366 * 86_400, 31 * 86_400]),
    "edge": st.sampled_from(EDGES),  # both ends at a bound of the allowed range
    "import_start": st.one_of(st.sampled_from([-1, MAX_REGISTER, MAX_REGISTER + 1]), raw_number),
    "import_end": st.one_of(st.sampled_from([-1, 0, MAX_REGISTER, 10**12]), raw_number),
    "merged": st.one_of(st.sampled_from([2, 5, 10**6]), raw_number),
    "shares": st.one_of(st.just({"gen": 10**14}), st.just({"gen": -1}), st.just({"x y": 1})),
    "tariff": st.sampled_from(["ibt-tou", "flat tariff"]),
    "tariff_version": st.one_of(st.just(1), raw_number),
}


@st.composite
def attack_record(draw: st.DrawFn) -> dict[str, Any]:
    """A plausible record of the attacker's own meters (in or out of order, duplicated,
    overlapping, reset or jumping registers, seq gaps), with none, one or two fields absurd."""
    seq = draw(st.integers(1, 12))
    start = T0 + timedelta(minutes=15 * (seq - 1) + draw(st.sampled_from([0, 0, -30, 7])))
    span = draw(st.sampled_from([900, 900, 0, 3600]))
    base = 1000 + 100 * (seq - 1)
    low = base + draw(st.sampled_from([0, 0, 0, -50, -base, 10**6]))  # chain, overlap, reset, jump
    record: dict[str, Any] = {
        "meter": draw(st.sampled_from(["gw-0-m0", "gw-0-m1"])),
        "seq": seq,
        "start": start.astimezone(draw(offsets)).isoformat(),
        "end": (start + timedelta(seconds=span)).isoformat(),
        "import_start": low,
        "import_end": low + draw(st.sampled_from([100, 0, 2_000])),
    }
    for field in draw(st.lists(st.sampled_from(sorted(ABSURD)), max_size=2, unique=True)):
        value = draw(ABSURD[field])
        if field == "span":
            record["end"] = (start + timedelta(seconds=value)).isoformat()
        elif field == "edge":
            edge = datetime.fromisoformat(value)
            record["start"], record["end"] = value, (edge + timedelta(seconds=span)).isoformat()
        else:
            record[field] = value
    return record


@st.composite
def attack(draw: st.DrawFn) -> tuple[str, bytes]:
    """One message from the attacker's gateway."""
    kind = draw(st.integers(0, 9))
    if kind <= 5:
        records = draw(st.lists(attack_record(), min_size=1, max_size=3))
        return topic(ATTACKER, "usage"), Payload.encode({"v": 1, "records": records})
    if kind == 6:
        n = draw(st.one_of(raw_number, st.integers()))
        tamper = {"id": f"e{draw(st.integers(0, 3))}", "kind": "tamper", "at": draw(instants),
                  "meter": "gw-0-m0", "data": {"n": n}}  # fmt: skip
        return topic(ATTACKER, "events"), Payload.encode({"v": 1, "events": [tamper]})
    if kind == 7:
        status = {"v": 1, "state": "offline", "at": draw(instants), "n": draw(raw_number)}
        return topic(ATTACKER, "status"), Payload.encode(status)
    garbage = draw(st.sampled_from([b"\x00", b"{", b"[]", b"null", b'{"v": 1, "records": []}']))
    return topic(ATTACKER, draw(st.sampled_from(["usage", "events", "status"]))), garbage


Step = tuple[list[tuple[str, bytes]], list[str], float, bool, int]
step = st.tuples(
    st.lists(attack(), max_size=4),  # the attacker's messages in this batch
    st.lists(st.sampled_from(HONEST), max_size=4),  # honest meters sending their next record
    st.sampled_from([0.0, 5.0, HOLD_S - 1, HOLD_S + 1, 4 * HOLD_S]),  # clock before the batch
    st.booleans(),  # replay one of the attacker's earlier messages (a duplicate)
    st.integers(0, 9),  # 0: the processor restarts before this batch (its caches are lost)
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_one_gateway_never_stalls_the_others(template: Path, steps: list[Step]) -> None:
    with _copy(template) as engine:
        _run(engine, steps)


def _run(engine: Engine, steps: list[Step]) -> None:
    honest = {m: records_for(m, 30, t0=T0) for m in HONEST}
    next_seq = dict.fromkeys(HONEST, 0)
    sent: list[tuple[str, bytes]] = []
    processor = BatchProcessor(engine, hold_s=HOLD_S)
    counts: Counter[str] = Counter()
    now = T0 + timedelta(days=1)
    for attacks, meters, advance, replay, restart in steps:
        now += timedelta(seconds=advance)
        if restart == 0:
            processor = BatchProcessor(engine, hold_s=HOLD_S)
        messages = list(attacks)
        if replay and sent:
            messages.append(sent[len(sent) // 2])
        sent.extend(attacks)
        for meter in meters:
            record = honest[meter][next_seq[meter]]
            next_seq[meter] += 1
            messages.append((topic(meter.rsplit("-", 1)[0], "usage"), usage([record])))
        items = [Inbound(name, payload, now) for name, payload in sorted(messages)]
        counts.update(processor.process(items, now).counts)
    counts.update(processor.release_due(now + timedelta(seconds=HOLD_S + 1)).counts)
    for name in ("held", "released", "gaps_skipped", "late", "duplicates"):
        event(f"{name}: {'yes' if counts[name] else 'no'}")

    pu = table("posted_usage")
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(pu.c.meter_id, pu.c.seq, pu.c.import_start, pu.c.import_end).order_by(
                pu.c.meter_id, pu.c.seq
            )
        ).all()
        held = conn.execute(select(table("usage_pending").c.seq)).all()
        report = check_invariants(conn)
    posted: dict[str, list[tuple[int, int, int]]] = {}
    for meter, seq, low, high in rows:
        posted.setdefault(meter, []).append((seq, low, high))
    event(
        f"attacker records posted: {'yes' if any(m.startswith(ATTACKER) for m in posted) else 'no'}"
    )
    for meter in HONEST:  # all posted, their registers chained
        spans = posted.get(meter, [])
        assert [seq for seq, _, _ in spans] == list(range(1, next_seq[meter] + 1)), meter
        assert all(a[2] == b[1] for a, b in itertools.pairwise(spans)), meter
    assert all(low <= high for spans in posted.values() for _, low, high in spans)
    assert held == []
    reasons = [reason for _, reason in quarantined(engine)]
    assert all(r and "\n" not in r and "internal error" not in r for r in reasons), reasons
    broken = {name: c["detail"] for name, c in report["checks"].items() if not c["ok"]}
    assert not broken, broken


@contextmanager
def _copy(template: Path) -> Iterator[Engine]:
    """An engine on a fresh copy of the template database, removed afterwards."""
    path = template.parent / f"example-{uuid.uuid4().hex}.db"
    shutil.copyfile(template, path)
    engine = make_engine(f"sqlite:///{path}")
    try:
        yield engine
    finally:
        engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
