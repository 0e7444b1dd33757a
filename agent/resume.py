"""Where a gateway whose store started over resumes a meter's seqs: pure, no I/O.

A lost store is made anew with a new epoch, and its meters number their records from seq 1
again. The hub, which holds records of the old store up to some seq, tells the gateway with a
signed ``resume`` command (``protocol.messages.ResumePoint``): the highest seq it holds for the
meter and where the newest of those records ended (register and time). :func:`plan` decides
what the agent does about it, and ``Engine.resume`` carries it out in ONE transaction:

* every record of the meter still in the outbox (none of them is confirmed: the hub refused to
  settle them) moves up by the same ``shift``, so the lowest lands just above the hub's seq,
  in the same order and with the same gaps; the meter's seq counter and its credit charges move
  with them, so the next interval continues above them;
* the energy the meter used between the hub's newest record and the first one this store made
  (while the gateway had no store) becomes a **bridge** record at the seq in between, from the
  hub's register and time to where the first record starts: nothing is skipped, and the
  hub's register rule sees consecutive records that join exactly;
* with no record in the outbox, the open interval starts at the hub's register and time instead,
  so the next record it closes is the bridge itself.

A resume point the meter is already above (the same command applied before, or one from an
older restart) changes nothing. Where the register is below the hub's (it went back while the
store was lost), or the first record starts before the hub's newest ended, no bridge is made:
the records are renumbered and the hub's register rule judges them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from agent.metering.intervals import MeterState, Point
from protocol.messages import MAX_SPAN, ResumePoint, UsageRecord


@dataclass(frozen=True)
class Resumed:
    """What to change: add ``shift`` to the seq of every record of the meter in the outbox (and
    of its credit charges from seq ``lowest`` on: those below are of records the hub confirmed),
    store ``bridge`` if any, and take ``state`` as the meter's state."""

    lowest: int
    shift: int
    bridge: UsageRecord | None
    state: MeterState


def plan(point: ResumePoint, state: MeterState, first: UsageRecord | None) -> Resumed | None:
    """What resuming above ``point`` means for a meter in ``state`` whose lowest record still in
    the outbox is ``first`` (None: none); None when there is nothing to do."""
    lowest = first.seq if first is not None else state.seq + 1
    if lowest > point.seq:
        return None
    if first is None:
        opened = replace(_opened(point, state), seq=point.seq)
        return Resumed(lowest, point.seq + 1 - lowest, None, opened)
    bridge = _bridge(point, first)
    shift = point.seq + 1 - lowest + (1 if bridge is not None else 0)
    return Resumed(lowest, shift, bridge, replace(state, seq=state.seq + shift))


def _bridge(point: ResumePoint, first: UsageRecord) -> UsageRecord | None:
    """The record from the hub's newest (its register and time) to where ``first`` starts."""
    wh, at = point.import_end, point.end
    if wh is None or at is None or first.import_start <= wh or first.start < at:
        return None
    return UsageRecord(
        meter=first.meter,
        seq=point.seq + 1,
        start=max(at, first.start - MAX_SPAN),
        end=first.start,
        import_start=wh,
        import_end=first.import_start,
        epoch=first.epoch,
    )


def _opened(point: ResumePoint, state: MeterState) -> MeterState:
    """``state`` with its open interval starting at the hub's register and time, when that is
    where the meter's energy since the hub's newest record is counted from."""
    wh, at = point.import_end, point.end
    if wh is None or at is None:
        return state
    start, last = state.start, state.last
    hub = Point(at, wh)
    if start is None or last is None:
        return replace(state, start=hub, last=hub)
    if start.wh < wh or start.at < at:
        return state
    return replace(state, start=hub)
