"""The interval builder: usage sums to the register span, never negative, seq never repeats."""

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.metering.intervals import Amps, Closed, MeterState, Output, Point, Reset, step
from protocol.messages import MAX_CURRENT_A, MAX_SPAN

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


def _amps(readings: list[tuple[float, int, float | None]], report: float = 10) -> list[Output]:
    """Readings (seconds after T0, Wh, current) through the builder; what it closed."""
    state, out = MeterState("m1"), []
    for seconds, wh, amps in readings:
        state, produced = step(state, Point(T0 + timedelta(seconds=seconds), wh, amps), report)
        out.extend(produced)
    return out


def test_an_interval_carries_the_mean_of_its_current_readings() -> None:
    # the opening reading belongs to the interval before; the closing one to this interval
    out = _amps([(0, 100, 50.0), (4, 104, 2.0), (8, 108, 3.0), (10, 110, 7.0), (14, 114, 1.0),
                 (20, 120, 2.0)])  # fmt: skip
    closed = [o for o in out if isinstance(o, Closed)]
    assert [c.record().current_mean_a for c in closed] == [4.0, 1.5]


def test_a_reading_without_a_current_leaves_the_mean_to_the_others() -> None:
    out = _amps([(0, 100, None), (4, 104, None), (8, 108, 3.0), (10, 110, None),
                 (14, 114, None), (20, 120, None)])  # fmt: skip
    first, second = (o.record() for o in out if isinstance(o, Closed))
    assert first.current_mean_a == 3.0
    assert second.current_mean_a is None and "current_mean_a" not in second.model_dump_json(
        exclude_none=True
    )


def test_a_reset_closes_with_the_mean_so_far_and_starts_a_new_one() -> None:
    out = _amps([(0, 100, 1.0), (2, 105, 4.0), (4, 3, 9.0), (12, 8, 6.0)])
    closed = [o for o in out if isinstance(o, Closed)]
    assert isinstance(out[1], Reset)
    assert [c.current_mean_a for c in closed] == [4.0, 6.0]


def test_the_mean_is_rounded_to_a_milliampere_and_within_the_protocol() -> None:
    assert Amps().mean is None
    assert Amps().add(None) == Amps()
    assert Amps(1.0, 3).mean == 0.333
    assert Amps(3 * MAX_CURRENT_A, 2).mean == MAX_CURRENT_A


def test_the_current_does_not_make_two_readings_differ() -> None:
    """A reading equal in time and register to the interval's start closes nothing, whatever
    its current (an interval is about the register)."""
    assert Point(T0, 100, 1.0) == Point(T0, 100, 2.0)
    assert _amps([(0, 100, 1.0), (0, 100, 2.0)]) == []
