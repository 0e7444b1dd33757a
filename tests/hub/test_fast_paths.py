"""The hot path's shortcuts equal the plain computations they replace, on random input."""

from __future__ import annotations

import gc
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from hub.db import write_tx
from hub.ingest.batch import BatchProcessor
from hub.ingest.model import T_ACCOUNTS, T_CUSTOMERS, Inbound
from hub.ledger.bulk import _convert_instants, any_of, json_dumps, select_in
from hub.ledger.posting import apply_deltas
from hub.models.types import UTCDateTime
from hub.rating.engine import month_key
from hub.rating.payers import portions
from hub.rating.state import MeterState
from protocol.apportion import ScaledCarry, apportion, apportion_linear, dump_carry, split
from protocol.tariff import Tariff

ZONES = [UTC, timezone(timedelta(hours=2)), ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")]
# Few distinct instants, so values repeat as in a batch; DST folds of both zones included.
INSTANTS = st.builds(
    lambda base, minutes, zone, fold: (
        (base + timedelta(minutes=15 * minutes)).astimezone(zone).replace(fold=fold)
    ),
    st.sampled_from(
        [datetime(2026, 10, 25, 0, 0, tzinfo=UTC), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)]
    ),
    st.integers(0, 12),
    st.sampled_from(ZONES),
    st.integers(0, 1),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), INSTANTS), max_size=40))
def test_convert_instants_equals_converting_each_value(values: list[datetime | None]) -> None:
    for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):
        convert = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert convert is not None
        fast = _convert_instants(values, convert)
        plain = [convert(v) for v in values]
        assert [repr(v) for v in fast] == [repr(v) for v in plain]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6) | st.integers(), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5))
def test_json_dumps_is_the_standard_one(value: dict[str, Any]) -> None:
    assert json_dumps(value) == json.dumps(value)


def test_json_dumps_fails_as_the_standard_one() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    for bad, error in (({"a": object()}, TypeError), (circular, ValueError)):
        with pytest.raises(error) as plain:
            json.dumps(bad)
        with pytest.raises(error, match=re.escape(str(plain.value))):
            json_dumps(bad)


NAMES = st.sampled_from(["a", "b", "gen", "tax"])
RATES = st.tuples(st.dictionaries(NAMES, st.integers(0, 10**6), min_size=1), st.integers(1, 10**6))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(RATES, min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**5)), min_size=1, max_size=12),
)
def test_linear_apportion_chained_on_its_own_carry_is_the_protocols(
    tariffs: list[tuple[dict[str, int], int]], steps: list[tuple[int, int]]
) -> None:
    """Record after record, the tariff (its denominator) kept or changed: the ScaledCarry fed
    back in gives the protocol's shares and carry, and dumps as the protocol's carry does."""
    fast: Mapping[str, Fraction] = {}
    exact: dict[str, Fraction] = {}
    for which, energy in steps:
        rates, d = tariffs[which % len(tariffs)]
        amounts = {p: Fraction(r * energy, d) for p, r in rates.items()}
        shares, fast = apportion_linear(rates, d, energy, fast)
        want_shares, exact = apportion(amounts, exact)
        assert shares == want_shares
        assert isinstance(fast, ScaledCarry)
        assert list(fast.items()) == list(exact.items())
        assert fast.dump() == dump_carry(exact)
        assert MeterState(carry=fast).dump() == MeterState(carry=exact).dump()


@settings(max_examples=300, deadline=None)
@given(INSTANTS, st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]))
def test_month_key_is_the_local_month(moment: datetime, zone: str) -> None:
    component = {"provider": "gen", "per_kwh": "0.1"}
    tariff = Tariff.model_validate(
        {"id": "t", "currency": "USD", "timezone": zone, "components": [component]}
    )
    for _ in range(2):  # computed, then memoised
        assert month_key(tariff, moment) == moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m")


@given(st.integers(0, 10**12), st.dictionaries(NAMES, st.integers(0, 9), min_size=1, max_size=3))
def test_portions_is_the_protocols_split(debit: int, weights: dict[str, int]) -> None:
    if not any(weights.values()):
        weights["a"] = 1
    want = {a: v for a, v in split(debit, weights).items() if v} if debit else {}
    assert list(portions(debit, weights).items()) == list(want.items())


ZONES = [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30))]


def _json_dump(state: MeterState) -> str:
    """MeterState.dump as json.dumps writes it (the general path)."""
    data: dict[str, Any] = {"seq": state.seq, "carry": dump_carry(state.carry)}
    if state.month is not None:
        data["month"] = state.month
        data["mtd"] = f"{state.mtd.numerator}/{state.mtd.denominator}"
    if state.register is not None:
        data["register"] = state.register
    if state.segment:
        data["segment"] = state.segment
    if state.posted is not None:
        data["posted"] = state.posted
    if state.until is not None:
        data["until"] = state.until.isoformat()
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@given(
    st.integers(0, 2**53),
    st.dictionaries(st.text(max_size=5), st.fractions(max_denominator=10**9), max_size=4),
    st.one_of(st.none(), st.text(max_size=8)),
    st.fractions(min_value=0, max_denominator=10**6),
    st.one_of(st.none(), st.integers(0, 10**15)),
    st.integers(0, 10**6),
    st.one_of(st.none(), st.datetimes(timezones=st.sampled_from(ZONES))),
    st.one_of(st.none(), st.integers(0, 2**53)),
)
def test_state_dump_is_json_dumps(  # noqa: PLR0917 (hypothesis passes them positionally)
    seq: int,
    carry: dict[str, Fraction],
    month: str | None,
    mtd: Fraction,
    register: int | None,
    segment: int,
    until: datetime | None,
    posted: int | None,
) -> None:
    state = MeterState(seq=seq, carry=carry, month=month, mtd=mtd, register=register,
                       segment=segment, until=until, posted=posted)  # fmt: skip
    assert state.dump() == _json_dump(state)
    loaded = MeterState.load(state.dump())
    assert (loaded.register, loaded.segment, loaded.until, loaded.posted) == (
        register, segment, until, posted)  # fmt: skip


def test_select_in_returns_what_a_core_select_does(engine: Engine) -> None:
    """More keys than one SQLite chunk, values through the columns' processors (UTC datetime,
    JSON, bool), missing keys ignored, row lock on PostgreSQL."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ids = [f"c-{i:04d}" for i in range(1234)]
    with write_tx(engine) as conn:
        conn.execute(insert(T_CUSTOMERS), [
            {"id": c, "name": c, "protected": i % 3 == 0, "alternate_account_id": None,
             "flags": {"n": i} if i % 2 else {}, "created_at": now + timedelta(seconds=i % 7)}
            for i, c in enumerate(ids)
        ])  # fmt: skip
    wanted = sorted({*ids[::2], *ids[1::7], "nobody"})
    columns = ("id", "protected", "flags", "created_at")
    with write_tx(engine) as conn:
        fast = select_in(conn, T_CUSTOMERS, columns, "id", wanted, order_by="id", lock="UPDATE")
        core = conn.execute(
            select(*(T_CUSTOMERS.c[n] for n in columns))
            .where(T_CUSTOMERS.c.id.in_(wanted))
            .order_by(T_CUSTOMERS.c.id)
        ).all()
    assert fast == [tuple(row) for row in core]
    assert len(fast) == len(wanted) - 1
    assert isinstance(fast[0][1], bool) and fast[0][3].tzinfo is not None


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_any_of_selects_what_in_does(engine: Engine) -> None:
    """``any_of`` (``= ANY(array)`` on PostgreSQL) finds the rows ``in_`` finds, none for no
    keys, and PostgreSQL prepares one statement text for any number of keys."""
    ids = [f"c-{i:03d}" for i in range(40)]
    with write_tx(engine) as conn:
        conn.execute(insert(T_CUSTOMERS), [{"id": c, "name": c, "flags": {}, "created_at": NOW}
                                             for c in ids])  # fmt: skip
    for wanted in ([], ["nobody"], ids[:1], [*ids[::3], "nobody"], ids):
        with write_tx(engine) as conn:
            ids_of = select(T_CUSTOMERS.c.id)
            fast = conn.execute(ids_of.where(any_of(conn, T_CUSTOMERS.c.id, wanted))).scalars()
            core = conn.execute(ids_of.where(T_CUSTOMERS.c.id.in_(wanted))).scalars()
            assert sorted(fast) == sorted(core)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            texts = {str(select(T_CUSTOMERS.c.id).where(any_of(conn, T_CUSTOMERS.c.id, w))
                         .compile(dialect=engine.dialect)) for w in (ids[:1], ids)}  # fmt: skip
        assert len(texts) == 1


def test_apply_deltas_adds_each_delta_once(engine: Engine) -> None:
    """Many accounts at once (one statement on PostgreSQL) move as one UPDATE each would."""
    with write_tx(engine) as conn:
        conn.execute(insert(T_ACCOUNTS), [
            {"id": f"a-{i:03d}", "name": "a", "kind": "customer", "currency": "USD",
             "balance": 1000 * i, "created_at": NOW}
            for i in range(30)
        ])  # fmt: skip
    deltas = {f"a-{i:03d}": (-1) ** i * (7 * i + 1) for i in range(0, 30, 2)}
    with write_tx(engine) as conn:
        apply_deltas(conn, deltas)
        apply_deltas(conn, {"a-001": 5})
    with write_tx(engine) as conn:
        got = {a: int(b) for a, b in conn.execute(select(T_ACCOUNTS.c.id, T_ACCOUNTS.c.balance))}
    want = {f"a-{i:03d}": 1000 * i + deltas.get(f"a-{i:03d}", 0) for i in range(30)}
    want["a-001"] += 5
    assert got == want


def test_batch_pauses_the_garbage_collector_only_while_it_runs(engine: Engine) -> None:
    processor = BatchProcessor(engine)
    now = datetime(2026, 3, 1, tzinfo=UTC)
    garbage = [Inbound("smsa/v1/gw/gw-1/usage", b"not json", now)]
    assert gc.isenabled()
    assert processor.process(garbage, now).counts["quarantined"] == 1
    assert gc.isenabled()
    gc.disable()
    try:
        processor.process(garbage, now)
        assert not gc.isenabled()  # a caller's choice is left alone
    finally:
        gc.enable()
