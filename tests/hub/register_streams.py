"""Usage streams a gateway may send for one meter, as hypothesis strategies: the meter's true
history (intervals of use, register resets) and what reaches the hub (records dropped, repeated,
reordered, re-sent under new seqs whole or in part, the reset claims)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from hub.rating.register import Claim

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=15)


@dataclass(frozen=True)
class Rec:
    seq: int
    start_wh: int
    end_wh: int
    start_at: datetime
    end_at: datetime


@dataclass(frozen=True)
class Truth:
    records: list[Rec]  # the agent's records, seq 1..n
    claims: list[Claim]  # one per reset, in order
    span: int  # what the register really moved: the sum over its lives of last - first
    register: int  # where it stands at the end
    until: datetime  # when the history ends


@st.composite
def meters(draw: st.DrawFn) -> Truth:
    """A meter's true history: intervals of use and register resets, as the agent reports it
    (agent.metering.intervals: a reset closes the interval and the next starts at the new
    reading; two resets may come with no interval between them)."""
    register = draw(st.integers(0, 10**6))
    now = T0
    records: list[Rec] = []
    claims: list[Claim] = []
    span = 0
    for step in draw(st.lists(st.one_of(st.integers(0, 5000), st.floats(0, 1)), min_size=1,
                              max_size=14)):  # fmt: skip
        if isinstance(step, int):  # an interval using ``step`` Wh
            records.append(Rec(len(records) + 1, register, register + step, now, now + STEP))
            register, now, span = register + step, now + STEP, span + step
        elif register > 0:  # a reset to a fraction of the register, some seconds later
            new = int(register * step) if step < 1 else register - 1
            later = now + timedelta(seconds=draw(st.integers(0, 120)))
            claims.append(Claim(register, new, now, later))
            register, now = new, later
    return Truth(records, claims, span, register, now)


@dataclass(frozen=True)
class Stream:
    items: list[Rec | Claim]
    ahead: int  # how far re-timed copies report the register beyond where it stands


@st.composite
def streams(draw: st.DrawFn, truth: Truth) -> Stream:
    """What a gateway may send: each record dropped, sent or sent again; copies of records
    (whole or part of the span) under seqs never posted (dropped ones, or new ones beyond the
    agent's), either with the record's own interval or re-timed after the history's end (the
    attack as reported); the reset claims; all in any order."""
    out: list[Rec | Claim] = []
    dropped: list[int] = []
    for r in truth.records:
        copies = draw(st.sampled_from([0, 1, 1, 1, 2]))
        out += [r] * copies
        if not copies:
            dropped.append(r.seq)
    out += truth.claims
    fresh = len(truth.records)
    later = truth.until
    ahead = 0
    for _ in range(draw(st.integers(0, 8))) if truth.records else ():
        r = draw(st.sampled_from(truth.records))
        lo = draw(st.integers(r.start_wh, r.end_wh))
        hi = draw(st.integers(lo, r.end_wh))
        if draw(st.booleans()):  # re-timed, under a new seq
            fresh += 1
            out.append(Rec(fresh, lo, hi, later, later + STEP))
            later += STEP
            ahead = max(ahead, hi - truth.register)
            continue
        if dropped and draw(st.booleans()):
            seq = dropped.pop(draw(st.integers(0, len(dropped) - 1)))
        else:
            fresh += 1
            seq = fresh
        out.append(Rec(seq, lo, hi, r.start_at, r.end_at))
    out = draw(st.permutations(out))
    if draw(st.booleans()):  # every reset reported first (as the agent's outbox orders them)
        out.sort(key=lambda item: not isinstance(item, Claim))
    return Stream(out, ahead)
