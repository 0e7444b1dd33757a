"""The register rule (hub.rating.register) as examples and as properties: whatever a gateway
sends (records dropped, repeated, reordered, re-sent under new seqs, whole or in part, and its
register resets), the energy posted never exceeds what the register really moved, and within a
segment no Wh is posted twice; an honest stream in order is posted whole."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.rating.register import (
    GAP,
    INTERVAL,
    OVERLAP,
    Claim,
    Edge,
    Placed,
    Refused,
    place,
    reset_between,
)
from tests.hub.register_streams import STEP, T0, Rec, Stream, meters, streams


def at(i: float) -> datetime:
    return T0 + STEP * i


def claim(old_wh: int, new_wh: int, old_at: float, new_at: float | None = None) -> Claim:
    return Claim(old_wh, new_wh, at(old_at), at(old_at if new_at is None else new_at))


# -- examples ---------------------------------------------------------------------------------


def test_first_record_and_records_that_follow_the_register_are_placed() -> None:
    assert place(1, (1000, 1500), (at(0), at(1)), below=None, above=None) == Placed(0)
    newest = Edge(1, 1500, at(1), 0)
    assert place(2, (1500, 1900), (at(1), at(2)), below=newest, above=None) == Placed(0)
    # after a seq that never came (or records merged into this one: ``merged``), the register
    # may have moved on; right after seq 1 it must start where seq 1 ended
    assert place(3, (1700, 1900), (at(2), at(3)), below=newest, above=None) == Placed(0)
    assert place(3, (1500, 1900), (at(1), at(3)), below=newest, above=None, merged=2) == Placed(0)
    verdict = place(2, (1700, 1900), (at(1), at(2)), below=newest, above=None)
    assert verdict == Refused(GAP, "seq 2 [1700, 1900) Wh does not start where posted seq 1 "
                                   "ended (1500 Wh), with no seq between them")  # fmt: skip
    verdict = place(3, (1700, 1900), (at(1), at(3)), below=newest, above=None, merged=2)
    assert isinstance(verdict, Refused) and verdict.rule == GAP


def test_the_same_span_under_a_new_seq_is_refused() -> None:
    newest = Edge(4, 41000, at(4), 0)
    verdict = place(11, (1000, 41000), (at(0), at(4)), below=newest, above=None)
    assert isinstance(verdict, Refused) and verdict.rule == INTERVAL
    # even with times made up to follow: the register went back and no reset was reported
    verdict = place(11, (1000, 41000), (at(4), at(8)), below=newest, above=None)
    assert isinstance(verdict, Refused) and verdict.rule == OVERLAP
    assert verdict.reason == (
        "seq 11 [1000, 41000) Wh overlaps posted seq 4, which ends at 41000 Wh, "
        "and no register_reset was reported in between"
    )
    assert "\n" not in verdict.reason


def test_a_reported_reset_opens_the_next_segment_once() -> None:
    newest = Edge(4, 41000, at(4), 0)
    reset = claim(41000, 0, 4.5)
    verdict = place(5, (0, 300), (at(4.5), at(5)), below=newest, above=None, claims=lambda: [reset])
    assert verdict == Placed(1, reset)
    # the same claim again, after the record it opened the segment with: it no longer fits
    after = Edge(5, 300, at(5), 1)
    verdict = place(6, (0, 300), (at(5), at(6)), below=after, above=None, claims=lambda: [reset])
    assert isinstance(verdict, Refused) and verdict.rule == OVERLAP


def test_a_reset_claim_must_fit_between_the_newest_record_and_this_one() -> None:
    newest = Edge(4, 41000, at(4), 0)
    record = (5, (200, 300), (at(5), at(6)))
    for bad in (
        claim(41000, 250, 4.5),  # the register went back to above where the record starts
        claim(40000, 0, 4.5),  # from below where the register already was
        claim(41000, 0, 3, 3.5),  # before the newest record ended
        claim(41000, 0, 5.5, 5.5),  # after the record started
    ):
        seq, span, interval = record
        verdict = place(seq, span, interval, below=newest, above=None, claims=lambda b=bad: [b])
        assert isinstance(verdict, Refused), bad
    good = claim(41000, 200, 4, 5)
    assert place(*record, below=newest, above=None, claims=lambda: [good]) == Placed(1, good)


def test_two_resets_with_no_record_between_them_chain() -> None:
    newest = Edge(4, 41000, at(4), 0)
    first, second = claim(41000, 500, 4.2, 4.3), claim(700, 0, 4.6, 4.7)
    chained = reset_between(newest, 0, at(5), [second, first])
    assert chained == Claim(41000, 0, at(4.2), at(4.7))
    assert reset_between(newest, 0, at(5), [second]) is None  # 700 < 41000: not from here
    verdict = place(5, (0, 10), (at(5), at(6)), below=newest, above=None,
                    claims=lambda: [first, second])  # fmt: skip
    assert verdict == Placed(1, chained)


def test_a_late_record_fits_the_hole_its_seq_leaves() -> None:
    below, above = Edge(3, 1300, at(3), 0), Edge(6, 1600, at(6), 0)
    assert place(4, (1300, 1450), (at(3), at(4)), below=below, above=above) == Placed(0)
    for span, interval in (
        ((1250, 1450), (at(3), at(4))),  # starts inside seq 3's span
        ((1450, 1650), (at(5), at(6))),  # ends inside seq 6's span
        ((1300, 1450), (at(2), at(4))),  # starts before seq 3 ended
        ((1500, 1600), (at(5), at(7))),  # ends after seq 6 started
    ):
        assert isinstance(place(4, span, interval, below=below, above=above), Refused)
    # below every posted record, or in a hole next to a later segment
    assert place(1, (900, 1000), (at(0), at(1)), below=None, above=below) == Placed(0)
    opened = Edge(9, 40, at(8), 1)
    assert place(7, (1600, 1700), (at(6), at(7)), below=above, above=opened) == Placed(0)
    assert place(8, (0, 40), (at(7), at(8)), below=above, above=opened) == Placed(1)
    assert isinstance(place(8, (0, 50), (at(7), at(8)), below=above, above=opened), Refused)


def test_claims_are_read_from_the_agents_event_data() -> None:
    data = {"old_wh": 41000, "new_wh": 0, "old_at": at(4).isoformat(),
            "new_at": at(4.5).isoformat(), "gateway": "gw-1"}  # fmt: skip
    assert Claim.from_data(data) == claim(41000, 0, 4, 4.5)
    for broken in (
        {"old_wh": None},
        {"new_wh": 41000},  # not back
        {"new_wh": 42000},
        {"new_wh": "0"},
        {"new_at": at(3).isoformat()},  # before old_at
        {"old_at": "yesterday"},
        {"old_at": "2026-03-01T00:00:00"},  # no zone
    ):
        assert Claim.from_data({**data, **broken}) is None, broken
    assert Claim.from_data(None) is None


# -- properties -------------------------------------------------------------------------------


@dataclass
class Hub:
    """The rule applied as hub.ingest.batch applies it, one record at a time in arrival order
    (hold_s = 0: every record out of order is rated late, the hardest case)."""

    posted: dict[int, tuple[Rec, int]] = field(default_factory=dict)  # seq -> (record, segment)
    handled: int = 0  # the rating state's seq
    newest: Edge | None = None
    claims: list[Claim] = field(default_factory=list)
    refused: int = 0

    def offer(self, r: Rec) -> None:
        if r.seq in self.posted:
            return  # a duplicate (meter, seq)
        in_order = r.seq > self.handled
        if in_order:
            below, above = self.newest, None
        else:
            below, above = self._edges(r.seq)
        verdict = place(r.seq, (r.start_wh, r.end_wh), (r.start_at, r.end_at), below=below,
                        above=above, claims=lambda: list(self.claims))  # fmt: skip
        if in_order:
            self.handled = r.seq
        if isinstance(verdict, Refused):
            self.refused += 1
            return
        self.posted[r.seq] = (r, verdict.segment)
        if above is None:
            self.newest = Edge(r.seq, r.end_wh, r.end_at, verdict.segment)

    def _edges(self, seq: int) -> tuple[Edge | None, Edge | None]:
        lower = [s for s in self.posted if s < seq]
        higher = [s for s in self.posted if s > seq]
        below = above = None
        if lower:
            r, segment = self.posted[max(lower)]
            below = Edge(r.seq, r.end_wh, r.end_at, segment)
        if higher:
            r, segment = self.posted[min(higher)]
            above = Edge(r.seq, r.start_wh, r.start_at, segment)
        return below, above

    def energy(self) -> int:
        return sum(r.end_wh - r.start_wh for r, _ in self.posted.values())

    def segments_hold(self) -> bool:
        """Invariant 6 as /ledger/check tests it: in seq order, segments never go back and
        within one the spans follow each other without overlapping."""
        last: tuple[int, int] | None = None
        for seq in sorted(self.posted):
            r, segment = self.posted[seq]
            if last is not None and (segment < last[0] or
                                     (segment == last[0] and r.start_wh < last[1])):  # fmt: skip
                return False
            last = (segment, r.end_wh)
        return True


def run(stream: Stream) -> Hub:
    hub = Hub()
    for item in stream.items:
        if isinstance(item, Claim):
            hub.claims.append(item)
        else:
            hub.offer(item)
    return hub


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_no_stream_posts_more_than_the_register_moved(data: st.DataObject) -> None:
    """A copy re-timed into the future that reports the register *ahead* of where it stands
    cannot be told from use still to come (``ahead``): a gateway can always report use that
    has not happened yet (and the meter's own records are then refused until it gets there).
    Anything else it sends never adds energy."""
    truth = data.draw(meters())
    stream = data.draw(streams(truth))
    hub = run(stream)
    assert hub.energy() <= truth.span + stream.ahead
    assert hub.segments_hold()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_an_honest_stream_in_seq_order_posts_every_record_sent(data: st.DataObject) -> None:
    """Records dropped (gaps) or repeated, the rest in seq order, each reset reported before
    the record after it (the agent's outbox order): every record sent is posted, and with
    nothing dropped exactly what the register moved."""
    truth = data.draw(meters())
    records = [r for r in truth.records for _ in range(data.draw(st.sampled_from([0, 1, 1, 2])))]
    hub = Hub(claims=list(truth.claims))
    for r in records:
        hub.offer(r)
    sent = {r.seq for r in records}
    assert hub.refused == 0
    assert set(hub.posted) == sent
    assert hub.energy() == sum(r.end_wh - r.start_wh for r in truth.records if r.seq in sent)
    if sent == {r.seq for r in truth.records}:
        assert hub.energy() == truth.span
    assert hub.segments_hold()


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_late_records_of_one_register_fill_their_holes(data: st.DataObject) -> None:
    """No reset: records dropped, repeated and in any order (each out-of-order one rated
    late): every record sent is posted, nothing twice."""
    truth = data.draw(meters())
    records = [r for r in truth.records if not truth.claims or r.end_at <= truth.claims[0].old_at]
    sent = [r for r in records for _ in range(data.draw(st.integers(0, 2)))]
    hub = Hub()
    for r in data.draw(st.permutations(sent)):
        hub.offer(r)
    assert hub.refused == 0
    assert set(hub.posted) == {r.seq for r in sent}
    assert hub.segments_hold()
