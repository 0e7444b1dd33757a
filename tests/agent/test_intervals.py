"""The interval builder: usage sums to the register span, never negative, seq never repeats."""

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.metering.intervals import Closed, MeterState, Point, Reset, step
from protocol.messages import MAX_SPAN

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _run(values: list[int], gaps: list[float], report: float) -> tuple[MeterState, list[object]]:
    state = MeterState("m1")
    out: list[object] = []
    at = T0
    for wh, gap in zip(values, gaps, strict=True):
        at += timedelta(seconds=gap)
        state, produced = step(state, Point(at, wh), report)
        out.extend(produced)
    return state, out


def test_closes_on_aligned_boundary() -> None:
    state, out = _run([100, 105, 110, 120], [0, 4, 4, 4], 10)
    closed = [o for o in out if isinstance(o, Closed)]
    assert [(c.seq, c.start.wh, c.end.wh) for c in closed] == [(1, 100, 120)]
    assert closed[0].record().energy == 20
    assert state.start == Point(T0 + timedelta(seconds=12), 120)


def test_reset_closes_at_last_good_reading_and_restarts() -> None:
    _state, out = _run([100, 105, 3, 8, 20], [0, 1, 1, 1, 20], 10)
    assert isinstance(out[0], Closed) and (out[0].start.wh, out[0].end.wh) == (100, 105)
    assert isinstance(out[1], Reset) and (out[1].old.wh, out[1].new.wh) == (105, 3)
    assert isinstance(out[2], Closed) and (out[2].start.wh, out[2].end.wh) == (3, 20)
    assert [o.seq for o in out if isinstance(o, Closed)] == [1, 2]


def test_clock_step_back_keeps_interval_forward() -> None:
    state = MeterState("m1")
    state, _ = step(state, Point(T0, 10), 10)
    state, _ = step(state, Point(T0 + timedelta(seconds=5), 11), 10)
    state, out = step(state, Point(T0 - timedelta(hours=1), 12), 10)
    assert out == [] and state.last == Point(T0 + timedelta(seconds=5), 12)


def test_records_stay_within_the_protocol_bounds() -> None:
    """A reading from a clock that is not set is ignored (the next one carries its energy); an
    interval longer than MAX_SPAN (the agent was stopped) keeps its energy but starts MAX_SPAN
    before its end, so the record is one the hub accepts."""
    state = MeterState("m1")
    for unset in (datetime(1969, 12, 31, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC)):
        assert step(state, Point(unset, 5), 10) == (state, [])
    state, _ = step(state, Point(T0, 100), 10)
    assert step(state, Point(datetime(1969, 12, 31, tzinfo=UTC), 500), 10) == (state, [])
    later = T0 + timedelta(days=90)
    state, out = step(state, Point(later, 900), 10)
    assert len(out) == 1 and isinstance(out[0], Closed)
    record = out[0].record()
    assert (record.start, record.end, record.energy) == (later - MAX_SPAN, later, 800)


@given(
    st.lists(
        st.tuples(st.integers(-50, 1000), st.floats(0, 30), st.booleans()),
        min_size=1,
        max_size=80,
    ),
    st.sampled_from([1.0, 5.0, 10.0, 60.0]),
)
def test_usage_equals_register_span_never_negative(
    moves: list[tuple[int, float, bool]], report: float
) -> None:
    values: list[int] = []
    wh = 1000
    for delta, _, reset in moves:
        wh = max(0, delta) if reset else max(0, wh + delta)
        values.append(wh)
    state, out = _run(values, [g for _, g, _ in moves], report)
    closed = [o for o in out if isinstance(o, Closed)]
    assert [c.seq for c in closed] == list(range(1, len(closed) + 1))
    for c in closed:
        assert c.end.wh >= c.start.wh and c.end.at >= c.start.at
        c.record()  # validates as a protocol message
    # forward movement of the register, counting a drop as a restart from the new value
    span = sum(max(0, b - a) for a, b in itertools.pairwise(values))
    assert state.start is not None and state.last is not None
    open_part = state.last.wh - state.start.wh
    assert sum(c.end.wh - c.start.wh for c in closed) + open_part == span
    resets = [o for o in out if isinstance(o, Reset)]
    assert len(resets) == sum(1 for a, b in itertools.pairwise(values) if b < a)
    # intervals chain: each starts where the previous ended unless a reset lies between
    for a, b in itertools.pairwise(out):
        if isinstance(a, Closed) and isinstance(b, Closed):
            assert b.start == a.end
