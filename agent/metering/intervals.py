"""Turn a meter's cumulative register readings into usage intervals: pure, no I/O.

An interval opens at a reading and closes at the first reading at or past the next multiple of
``report_interval_s`` (wall-clock aligned), so intervals chain: each starts where the previous
ended and the energies of all intervals add up to the register's span. A reading below the last
one (reset, rollover, replaced meter, tamper) closes the open interval at the last good reading,
yields a :class:`Reset` and opens a new interval at the new reading: usage is never negative.

Each record also carries the mean of the current readings taken in its interval (the readings
after the one it starts at, up to and including the one it ends at; ``current_mean_a``, None
when none had a current). The mean rather than the maximum: a short inrush in an interval whose
register has not ticked yet is no sign of a bypass, current drawn all interval long is. The
sum is not persisted: an interval open across a restart averages the readings since.

Every record is one the protocol accepts: a reading timed outside ``MIN_INSTANT``..
``MAX_INSTANT`` (a clock that is not set) is ignored (the register is cumulative, the next
reading carries its energy), and an interval longer than ``MAX_SPAN`` (the agent was stopped,
or its clock jumped forward) keeps all its energy but starts ``MAX_SPAN`` before its end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime

from protocol.messages import MAX_CURRENT_A, MAX_INSTANT, MAX_SPAN, MIN_INSTANT, UsageRecord


@dataclass(frozen=True)
class Point:
    at: datetime
    wh: int
    current_a: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Amps:
    """The current readings of the open interval: their sum (A) and count."""

    total: float = 0.0
    count: int = 0

    def add(self, current_a: float | None) -> Amps:
        if current_a is None:
            return self
        return Amps(self.total + current_a, self.count + 1)

    @property
    def mean(self) -> float | None:
        """The mean to 1 mA, None without readings."""
        if not self.count:
            return None
        return min(max(round(self.total / self.count, 3), 0.0), MAX_CURRENT_A)


@dataclass(frozen=True)
class MeterState:
    """What survives a restart: the last seq used, the open interval's start, the last reading
    (``amps``, the open interval's current readings, does not)."""

    meter: str
    seq: int = 0
    start: Point | None = None
    last: Point | None = None
    amps: Amps = Amps()


@dataclass(frozen=True)
class Closed:
    meter: str
    seq: int
    start: Point
    end: Point
    current_mean_a: float | None = None

    def record(self) -> UsageRecord:
        return UsageRecord(
            meter=self.meter,
            seq=self.seq,
            start=max(self.start.at, self.end.at - MAX_SPAN),
            end=self.end.at,
            import_start=self.start.wh,
            import_end=self.end.wh,
            current_mean_a=self.current_mean_a,
        )


@dataclass(frozen=True)
class Reset:
    meter: str
    old: Point
    new: Point


Output = Closed | Reset


def boundary(start: datetime, report_interval_s: float) -> float:
    """The POSIX time at which an interval opened at ``start`` closes."""
    ts = start.timestamp()
    return (math.floor(ts / report_interval_s) + 1) * report_interval_s


def step(
    state: MeterState, reading: Point, report_interval_s: float
) -> tuple[MeterState, list[Output]]:
    """The state after ``reading`` and the intervals (and resets) it completes."""
    if reading.wh < 0:
        raise ValueError("a register reading cannot be negative")
    if not MIN_INSTANT <= reading.at < MAX_INSTANT:
        return state, []
    start, last = state.start, state.last
    if start is None or last is None:
        return replace(state, start=reading, last=reading), []
    if reading.at < last.at:  # the clock stepped back: keep intervals forward in time
        reading = Point(last.at, reading.wh, reading.current_a)
    out: list[Output] = []
    seq = state.seq
    if reading.wh < last.wh:
        if last != start:
            seq += 1
            out.append(Closed(state.meter, seq, start, last, state.amps.mean))
        out.append(Reset(state.meter, last, reading))
        return MeterState(state.meter, seq, reading, reading), out
    amps = state.amps.add(reading.current_a)
    if reading.at.timestamp() >= boundary(start.at, report_interval_s):
        seq += 1
        out.append(Closed(state.meter, seq, start, reading, amps.mean))
        return MeterState(state.meter, seq, reading, reading), out
    return MeterState(state.meter, seq, start, reading, amps), out
