"""Where a usage record may go in its meter's register: the rule behind invariant 6. Pure.

A meter's posted records, taken in seq order, form register **segments**. Within a segment the
register only goes up: each record's span ``[import_start, import_end)`` starts at or after the
end of the record before it and ends at or before the start of the record after it, so no Wh is
posted twice. Time never resets: across segments too, each record's interval ``[start, end)``
starts at or after the end of the record before it and ends at or before the start of the one
after it. A new segment starts only at the newest record, where the register went back *and*
the meter's gateway reported that reset (a ``register_reset`` event, :class:`Claim`) between
the newest posted record and this one, down to at most where this record starts.

``place`` decides for one record, given the nearest posted records below and above its seq
(:class:`Edge`): the segment it is posted in (:class:`Placed`), or why it is refused
(:class:`Refused`: the hub quarantines it and raises a ``tamper`` event with the rule).
In order:

1. time: it must not start before the record below ends or end after the record above starts
   (rule ``interval_overlap``);
2. it continues the segment of the record below if it starts at or above that record's end
   (and, if the record above is in the same segment, ends at or below that one's start);
3. else, if the record above opened a later segment, it joins that segment when it ends at or
   below that record's start (a late record of the new register, posted after the reset's
   record);
4. else, if no record above it is posted (the newest), it opens the next segment when a reset
   claim fits (:func:`reset_between`): the register went back from at least the end below to
   at most this start, after the record below ended and no later than this record starts (two
   resets with no record between them chain);
5. anything else overlaps a span already posted in its segment (rule ``register_overlap``);
6. placed in the segment of a neighbour whose seq directly follows or precedes it (``merged``
   intervals taken into account below), it must meet that neighbour's register exactly, as the
   agent's intervals do (rule ``register_gap``): energy between consecutive records is never
   skipped, which the ledger check would report.

So a gateway that re-sends a span under new seqs charges nothing: the copy starts below the
posted register (and, with its original interval, before the posted time), and a reset claim
opens at most one segment (it fits only between the newest posted record and the first record
after the reset).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple

OVERLAP = "register_overlap"
GAP = "register_gap"
INTERVAL = "interval_overlap"


class Edge(NamedTuple):  # a tuple: made for every record, and cheaper than a frozen dataclass
    """The nearest posted record on one side of a new record (by seq): its seq, its segment,
    and the register and time on the side facing the new record (``import_end``/``end`` of the
    record below, ``import_start``/``start`` of the record above; ``at`` None: no interval times
    were posted)."""

    seq: int
    wh: int
    at: datetime | None
    segment: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A register reset the meter's gateway reported: the register read ``old_wh`` at
    ``old_at``, then ``new_wh`` (lower) at ``new_at``."""

    old_wh: int
    new_wh: int
    old_at: datetime
    new_at: datetime

    @classmethod
    def from_data(cls, data: Mapping[str, object] | None) -> Claim | None:
        """The claim in a ``register_reset`` event's data (``old_wh``, ``new_wh``, ``old_at``,
        ``new_at``, as the agent sends them), or None if it does not describe a reset."""
        if not data:
            return None
        old_wh, new_wh = data.get("old_wh"), data.get("new_wh")
        if type(old_wh) is not int or type(new_wh) is not int or not 0 <= new_wh < old_wh:
            return None
        old_at, new_at = _moment(data.get("old_at")), _moment(data.get("new_at"))
        if old_at is None or new_at is None or new_at < old_at:
            return None
        return cls(old_wh, new_wh, old_at, new_at)


@dataclass(frozen=True, slots=True)
class Placed:
    """Post the record in ``segment``; ``reset``: the claim it opens that segment with."""

    segment: int
    reset: Claim | None = None


@dataclass(frozen=True, slots=True)
class Refused:
    """Do not post the record: ``rule`` (``register_overlap``, ``register_gap``,
    ``interval_overlap``) and a one-line ``reason``."""

    rule: str
    reason: str


def _no_claims() -> Iterable[Claim]:
    return ()


def place(
    seq: int,
    span: tuple[int, int],
    interval: tuple[datetime, datetime],
    *,
    below: Edge | None,
    above: Edge | None,
    merged: int = 1,
    claims: Callable[[], Iterable[Claim]] = _no_claims,
) -> Placed | Refused:
    """Where record ``seq`` (register ``span`` = (import_start, import_end), ``interval`` =
    (start, end), standing for ``merged`` intervals) goes, between the posted records ``below``
    and ``above`` (see the module). ``claims`` is called only when the record could open a
    segment (rarely)."""
    placed = _segment(seq, span, interval, below=below, above=above, claims=claims)
    if isinstance(placed, Refused):
        return placed
    if (below is not None and below.segment == placed.segment and seq - merged <= below.seq
            and span[0] != below.wh):  # fmt: skip
        why = f"does not start where {_name(below)} ended ({below.wh} Wh)"
        return Refused(GAP, f"{_what(seq, span)} {why}, with no seq between them")
    if (above is not None and above.segment == placed.segment and above.seq == seq + 1
            and span[1] != above.wh):  # fmt: skip
        why = f"does not end where {_name(above)} starts ({above.wh} Wh)"
        return Refused(GAP, f"{_what(seq, span)} {why}, with no seq between them")
    return placed


def _segment(
    seq: int,
    span: tuple[int, int],
    interval: tuple[datetime, datetime],
    *,
    below: Edge | None,
    above: Edge | None,
    claims: Callable[[], Iterable[Claim]],
) -> Placed | Refused:
    start_wh, end_wh = span
    start_at, end_at = interval
    if below is not None and below.at is not None and start_at < below.at:
        why = f"starts at {start_at.isoformat()}, before {_name(below)} ends"
        return Refused(INTERVAL, f"{_what(seq, span)} {why} ({below.at.isoformat()})")
    if above is not None and above.at is not None and end_at > above.at:
        why = f"ends at {end_at.isoformat()}, after {_name(above)} starts"
        return Refused(INTERVAL, f"{_what(seq, span)} {why} ({above.at.isoformat()})")
    if below is None:
        if above is None:
            return _placed(0)
        if end_wh <= above.wh:
            return _placed(above.segment)
        return Refused(OVERLAP, f"{_what(seq, span)} {_starts(above)}")
    if start_wh >= below.wh:
        if above is not None and above.segment == below.segment and end_wh > above.wh:
            return Refused(OVERLAP, f"{_what(seq, span)} {_starts(above)}")
        return _placed(below.segment)
    if above is not None:
        if above.segment > below.segment and end_wh <= above.wh:
            return _placed(above.segment)
        return Refused(OVERLAP, f"{_what(seq, span)} {_ends(below)}")
    reset = reset_between(below, start_wh, start_at, claims())
    if reset is not None:
        return Placed(below.segment + 1, reset)
    why = "and no register_reset was reported in between"
    return Refused(OVERLAP, f"{_what(seq, span)} {_ends(below)}, {why}")


def reset_between(
    below: Edge, start_wh: int, start_at: datetime, claims: Iterable[Claim]
) -> Claim | None:
    """The reset that took the register from where ``below`` left it down to at most
    ``start_wh`` by ``start_at``, as one claim, or None. It may be a chain of claims (the
    register reset twice with no record in between): the first went back from at least
    ``below.wh`` after ``below.at``; each next one from at least where the last one left it,
    after it; the last one down to at most ``start_wh``, by ``start_at``."""
    todo = sorted({c for c in claims if c.new_at <= start_at}, key=_order)
    first: dict[Claim, Claim] = {  # claim reached -> the claim its chain starts with
        c: c for c in todo if c.old_wh >= below.wh and (below.at is None or c.old_at >= below.at)
    }
    frontier = list(first)
    while frontier:  # each claim is reached once: at most len(todo) ** 2 steps
        found = []
        for r in frontier:
            for c in todo:
                if c not in first and c.old_wh >= r.new_wh and c.old_at >= r.new_at:
                    first[c] = first[r]
                    found.append(c)
        frontier = found
    for c in todo:
        if c in first and c.new_wh <= start_wh:
            return Claim(first[c].old_wh, c.new_wh, first[c].old_at, c.new_at)
    return None


def _order(c: Claim) -> tuple[datetime, datetime, int, int]:
    return (c.old_at, c.new_at, -c.old_wh, c.new_wh)


@lru_cache(maxsize=64)
def _placed(segment: int) -> Placed:
    """``Placed(segment)``, made once: nearly every record is placed this way."""
    return Placed(segment)


def _what(seq: int, span: tuple[int, int]) -> str:
    return f"seq {seq} [{span[0]}, {span[1]}) Wh"


def _starts(above: Edge) -> str:
    return f"overlaps {_name(above)}, which starts at {above.wh} Wh"


def _ends(below: Edge) -> str:
    return f"overlaps {_name(below)}, which ends at {below.wh} Wh"


def _name(edge: Edge) -> str:
    return f"posted seq {edge.seq}"


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
