"""The settlement planner (``hub.ingest.plan``) on its own: no database, no broker.

``Hub`` below carries one meter's posted records, held records, rating state and stored reset
claims from batch to batch as ``BatchProcessor`` does (its reads answered from what it posted),
so the properties cover what the ingest path does across batches: any order, duplication and
batching of a meter's records posts the same ledger once all have arrived; a gap older than the
hold time is skipped, and its records posted late, each exactly once. Examples pin each
decision.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.model import InvalidHeld, MeterCfg, Rec
from hub.ingest.plan import (
    Catalog,
    Decision,
    Duplicate,
    Gap,
    Hold,
    Invalid,
    Late,
    MeterInputs,
    MeterPlan,
    Mismatch,
    Post,
    Quarantine,
    Release,
    Reset,
    Tamper,
    late_records,
    plan_meter,
    triage,
)
from hub.ledger import UsagePosting
from hub.rating.mix import MixWindow
from hub.rating.register import Claim, Edge
from hub.rating.state import MeterState
from hub.rating.tariffs import TariffHistory, validate_document
from protocol.messages import UsageRecord
from protocol.tariff import Tariff

GW, METER = "gw-0", "gw-0-m0"
HOLD = timedelta(seconds=30)
NOW = datetime(2026, 6, 1, tzinfo=UTC)
T0 = datetime(2026, 3, 31, 14, tzinfo=UTC)  # the streams cross a month end in the zone
STEP = timedelta(hours=3)
TARIFF: dict[str, Any] = {
    "id": "ibt-tou",
    "currency": "USD",
    "timezone": "Africa/Johannesburg",
    "components": [
        {"provider": "gen", "blocks": [{"up_to": "1", "price": "0.0731"},
                                       {"up_to": "3", "price": "0.1379"},
                                       {"price": "0.2113"}]},
        {"provider": "grid", "per_kwh": "0.0417",
         "tou": [{"start": "17:00", "end": "21:00", "price": "0.0933"}]},
        {"provider": "tax", "tax_rate": "0.15"},
    ],
}  # fmt: skip
PROVIDERS = {"gen": "provider:gen", "grid": "provider:grid", "tax": "provider:tax"}


def history(document: dict[str, Any] = TARIFF) -> TariffHistory:
    tariff = validate_document(json.dumps(document), 1)
    return TariffHistory(tariff.id, (T0 - timedelta(days=365),), (tariff,))


CATALOG = Catalog({"ibt-tou": history()}, PROVIDERS)
CFG = MeterCfg(METER, GW, "c-0", "ibt-tou", None, True, "on", None)


def record(seq: int, start_wh: int, end_wh: int, at: int, **more: Any) -> UsageRecord:
    """Record ``seq`` over [start_wh, end_wh) Wh, in interval ``at`` (counted in STEPs)."""
    start = T0 + STEP * at
    return UsageRecord(meter=METER, seq=seq, start=start, end=start + STEP,
                       import_start=start_wh, import_end=end_wh, **more)  # fmt: skip


def honest(n: int, used: int = 700) -> list[UsageRecord]:
    return [record(s, 1000 + used * (s - 1), 1000 + used * s, s - 1) for s in range(1, n + 1)]


@dataclass
class Hub:
    """One meter as the batch processor keeps it between batches: what it posted (which its
    reads return), what it holds, the rating state, the reset claims stored."""

    cfg: MeterCfg = field(default_factory=lambda: CFG)
    catalog: Catalog = CATALOG
    posted: dict[int, UsagePosting] = field(default_factory=dict)
    held: dict[int, Rec] = field(default_factory=dict)
    state: MeterState = field(default_factory=MeterState)
    claims: list[Claim] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def batch(
        self, records: Sequence[UsageRecord], now: datetime, claims: Sequence[Claim] = ()
    ) -> MeterPlan | None:
        """One batch of the meter's ``records`` (and reset ``claims``, stored with it)."""
        due = any(now - h.received_at >= HOLD for h in self.held.values())
        if not records and not due:  # the processor does not even read the meter
            self.claims += claims
            return None
        usage = [Rec(r, GW, now, False) for r in records]
        triaged = triage(usage, {METER: self.cfg}, {(METER, s) for s in self.held})
        new = list(triaged.candidates)
        posted = {c.record.seq for c in new
                  if c.record.seq <= self.state.seq and c.record.seq in self.posted}  # fmt: skip
        inputs = MeterInputs(self.cfg, self.state, new + list(self.held.values()), posted=posted)
        late = {r.seq: self.around(r, tariff) for r, tariff in late_records(inputs, self.catalog)}
        inputs = replace(inputs, late=late)
        plan = plan_meter(inputs, self.catalog, now, HOLD)
        if plan.needs_claims:
            plan = plan_meter(replace(inputs, claims=[*self.claims, *claims]), self.catalog, now,
                              HOLD)  # fmt: skip
        assert not plan.needs_claims
        self.claims += claims
        self.write([*triaged.decisions, *plan.decisions], plan)
        return plan

    def around(self, r: UsageRecord, tariff: Tariff) -> Late:
        """What ``reads.late_context`` reads for a late record, from the posted records."""
        below = above = None
        if lower := [p for s, p in self.posted.items() if s < r.seq]:
            low = max(lower, key=lambda p: p.seq)
            below = Edge(low.seq, low.import_end, low.interval_end, low.segment)
        if upper := [p for s, p in self.posted.items() if s > r.seq]:
            high = min(upper, key=lambda p: p.seq)
            above = Edge(high.seq, high.import_start, high.interval_start, high.segment)
        local = r.start.astimezone(tariff.zone)
        month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        mtd = sum(p.import_end - p.import_start for p in self.posted.values()
                  if p.interval_start is not None and p.interval_end is not None
                  and p.interval_start >= month and p.interval_end <= r.start)  # fmt: skip
        return Late(below, above, Fraction(mtd))

    def write(self, decisions: Sequence[Decision], plan: MeterPlan) -> None:
        for d in decisions:
            if isinstance(d, Post):
                assert d.posting.seq not in self.posted, f"seq {d.posting.seq} posted twice"
                self.posted[d.posting.seq] = d.posting
            elif isinstance(d, Hold) and not d.rec.pending:
                self.held[d.rec.record.seq] = replace(d.rec, pending=True)
            elif isinstance(d, Release):
                del self.held[d.seq]
        if plan.state is not None:
            self.state = plan.state
        self.decisions += decisions


def ledger(hub: Hub) -> list[tuple[Any, ...]]:
    return [(p.seq, p.import_start, p.import_end, p.segment, tuple(p.lines), p.metadata)
            for _, p in sorted(hub.posted.items())]  # fmt: skip


def settled(decisions: Sequence[Decision]) -> set[int]:
    """The seqs a gateway gets a receipt for (``BatchProcessor``: posted, quarantined, refused
    or found already posted; not held, not a copy within the batch or of a held record)."""
    out = set()
    for d in decisions:
        if isinstance(d, Post | Quarantine | Tamper) or (isinstance(d, Duplicate) and d.posted):
            out.add(d.rec.record.seq)
    return out


# -- properties ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    records: list[UsageRecord]
    claims: list[Claim]


@st.composite
def histories(draw: st.DrawFn) -> History:
    """A meter's records as its agent makes them: consecutive spans, some standing for several
    intervals (``merged``), register resets (reported as claims), agent shares that may
    disagree with the hub's."""
    register = draw(st.integers(0, 10**5))
    at, seq = T0, 0
    records: list[UsageRecord] = []
    claims: list[Claim] = []
    for _ in range(draw(st.integers(1, 12))):
        if records and register > 0 and draw(st.integers(0, 5)) == 0:
            new = draw(st.integers(0, register - 1))
            claims.append(Claim(register, new, at, at + timedelta(seconds=30)))
            register, at = new, at + timedelta(seconds=30)
        merged = draw(st.sampled_from([1, 1, 1, 1, 2, 3]))
        seq += merged
        used = draw(st.integers(0, 4000))
        shares = draw(st.sampled_from([{}, {}, {"gen": 1, "grid": 1}]))
        records.append(UsageRecord(meter=METER, seq=seq, start=at, end=at + STEP * merged,
                                   import_start=register, import_end=register + used,
                                   merged=merged, shares=shares))  # fmt: skip
        register, at = register + used, at + STEP * merged
    return History(records, claims)


@st.composite
def deliveries(draw: st.DrawFn, h: History) -> list[list[UsageRecord]]:
    """The records, each sent one to three times, in any order, split into batches."""
    copies = [r for r in h.records for _ in range(draw(st.integers(1, 3)))]
    sent = draw(st.permutations(copies))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(sent) - 1)), max_size=len(sent))))
    bounds = [0, *cuts, len(sent)]
    return [list(sent[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


def in_order(h: History) -> Hub:
    hub = Hub()
    hub.batch([], NOW, h.claims)
    hub.batch(h.records, NOW)
    assert not hub.held
    return hub


@settings(max_examples=150, deadline=None)
@given(data=st.data(), h=histories())
def test_any_order_duplication_and_batching_posts_the_same_ledger(
    data: st.DataObject, h: History
) -> None:
    """Within the hold time: records behind a gap are held until it fills, so however the
    stream arrives, the postings, the rating state and what is receipted are those of one
    in-order batch."""
    reference = in_order(h)
    hub = Hub()
    hub.batch([], NOW, h.claims)  # the agent reports a reset before the record after it
    receipted: set[int] = set()
    for n, batch in enumerate(data.draw(deliveries(h))):
        plan = hub.batch(batch, NOW + timedelta(seconds=n))  # never older than HOLD here
        assert plan is not None
        held = {d.rec.record.seq for d in plan.decisions if isinstance(d, Hold)}
        assert not held & settled(plan.decisions)  # a held record is not receipted yet
        receipted |= settled(plan.decisions)
    assert not hub.held
    assert ledger(hub) == ledger(reference)
    assert hub.state == reference.state
    assert receipted == {r.seq for r in h.records}
    assert not [d for d in hub.decisions if isinstance(d, Gap | Tamper | Quarantine)]


@settings(max_examples=150, deadline=None)
@given(data=st.data(), h=histories())
def test_gaps_beyond_the_hold_time_are_skipped_and_filled_late_once(
    data: st.DataObject, h: History
) -> None:
    """Batches far apart in time: a record held longer than the hold time is posted with its
    gap skipped (a ``seq_gap`` naming the missing seqs), and each record of the gap that
    arrives later is posted late. Every record is posted exactly once, the register's energy
    exactly once; only charges may differ from the in-order ledger (rounding, blocks)."""
    hub = Hub()
    hub.batch([], NOW, h.claims)
    batches = data.draw(deliveries(h))
    now = NOW
    for batch in batches:
        now += timedelta(seconds=data.draw(st.sampled_from([1, 31, 600])))
        hub.batch(batch, now)
    hub.batch([], now + HOLD)  # the hold ends for whatever is still held
    assert not hub.held
    refused = {d.rec.record.seq for d in hub.decisions if isinstance(d, Tamper)}
    assert not refused & set(hub.posted)
    assert sorted(refused | set(hub.posted)) == [r.seq for r in h.records]
    if not h.claims:  # only a record lost across a reset can be refused (README)
        assert not refused
        assert sum(p.import_end - p.import_start for p in hub.posted.values()) == sum(
            r.energy for r in h.records
        )
    skipped: set[int] = set()
    for gap in (d for d in hub.decisions if isinstance(d, Gap)):
        assert gap.first <= gap.last < gap.seq
        skipped |= set(range(gap.first, gap.last + 1))
    late = {d.rec.record.seq for d in hub.decisions if isinstance(d, Post) and d.late}
    assert late == skipped & set(hub.posted)  # a record of a skipped gap is rated late


@settings(max_examples=150, deadline=None)
@given(h=histories())
def test_a_plan_asks_for_the_reset_claims_only_when_it_needs_them(h: History) -> None:
    """Planned without claims (not read), a plan asks for them only if a record could open a
    register segment; when it does not ask, it is the plan the claims would give."""
    inputs = MeterInputs(CFG, MeterState(), [Rec(r, GW, NOW, False) for r in h.records])
    without = plan_meter(inputs, CATALOG, NOW, HOLD)
    given_ = plan_meter(replace(inputs, claims=h.claims), CATALOG, NOW, HOLD)
    assert without.needs_claims == bool(h.claims)
    assert not given_.needs_claims
    assert len([d for d in given_.decisions if isinstance(d, Reset)]) == len(h.claims)
    if not without.needs_claims:
        assert (without.decisions, without.state) == (given_.decisions, given_.state)


# -- examples -----------------------------------------------------------------------------------


def test_triage_quarantines_foreign_and_unknown_meters_and_drops_copies() -> None:
    r = record(1, 1000, 1700, 0)
    mine, copy = Rec(r, GW, NOW, False), Rec(r, GW, NOW, False)
    ghost = Rec(r.model_copy(update={"meter": "ghost"}), GW, NOW, False)
    foreign = Rec(r, "gw-9", NOW, False)
    again = Rec(record(2, 1700, 1800, 1), GW, NOW, False)
    bad = InvalidHeld(METER, 7, GW, "{}", "meter: Field required")
    out = triage([mine, copy, ghost, foreign, again], {METER: CFG}, {(METER, 2)}, [bad])
    assert out.candidates == (mine,)
    assert out.decisions == (
        Invalid(bad),
        Duplicate(copy),
        Quarantine(ghost, "unknown meter 'ghost'"),
        Quarantine(foreign, "gateway 'gw-9' does not own meter 'gw-0-m0'"),
        Duplicate(again),
    )


def test_records_post_in_seq_order_and_a_posted_copy_is_a_settled_duplicate() -> None:
    hub = Hub()
    plan = hub.batch(honest(2)[::-1], NOW)
    assert plan is not None and plan.state is not None and plan.credit is not None
    assert [type(d) for d in plan.decisions] == [Post, Post]
    assert [d.rec.record.seq for d in plan.decisions if isinstance(d, Post)] == [1, 2]
    assert plan.state.seq == 2 and plan.state.register == 2400
    assert plan.credit.account == "c-0"
    again = hub.batch(honest(2)[:1], NOW)
    assert again is not None
    assert again.decisions == (Duplicate(Rec(honest(1)[0], GW, NOW, False), posted=True),)
    assert again.state is None and again.credit is None


def test_a_record_behind_a_gap_is_held_then_released_when_the_gap_fills() -> None:
    hub = Hub()
    one, two, three = honest(3)
    plan = hub.batch([one, three], NOW)
    assert plan is not None
    assert [type(d) for d in plan.decisions] == [Post, Hold]
    assert list(hub.held) == [3]
    later = hub.batch([two], NOW + timedelta(seconds=5))
    assert later is not None
    assert [type(d) for d in later.decisions] == [Post, Post, Release]
    assert later.decisions[2] == Release(METER, 3, posted=True)
    assert not hub.held


def test_a_gap_older_than_the_hold_time_is_skipped_and_filled_late() -> None:
    hub = Hub()
    one, two, three = honest(3)
    hub.batch([one, three], NOW)
    assert hub.batch([], NOW + HOLD - timedelta(seconds=1)) is None  # not due: not even read
    plan = hub.batch([], NOW + HOLD)
    assert plan is not None
    assert plan.decisions[0] == Gap(METER, 3, 2, 2)
    assert [type(d) for d in plan.decisions] == [Gap, Post, Release]
    late = hub.batch([two], NOW + HOLD + timedelta(seconds=1))
    assert late is not None
    (post,) = late.decisions
    assert isinstance(post, Post) and post.late
    assert hub.state.seq == 3  # the late record moves neither the contiguous seq ...
    assert hub.state.register == three.import_end  # ... nor the register


def test_a_late_record_is_rated_with_the_month_to_date_posted_before_it() -> None:
    """Inclining blocks: the late record's kWh fall in the block the energy posted before it
    in its month puts them in, as ``reads.late_context`` reads it."""
    records = honest(4, used=1500)
    hub = Hub()
    hub.batch([records[0], records[2], records[3]], NOW)
    hub.batch([], NOW + HOLD)
    late = hub.batch([records[1]], NOW + HOLD)
    reference = in_order(History(records, []))
    assert late is not None
    (post,) = late.decisions
    assert isinstance(post, Post) and post.late
    assert hub.around(records[1], CATALOG.tariffs["ibt-tou"].tariffs[0]).mtd == 1500
    # record 1 before it in its month (3 and 4 come after it): its 1.5 kWh are all in the
    # second block, as in order; only the carried remainders differ (a unit per provider),
    # where a month-to-date of 0 would price one kWh in the first block, 6 cents less
    assert abs(debit(post.posting) - debit(reference.posted[2])) <= 3
    no_mtd = plan_meter(MeterInputs(CFG, hub.state, [Rec(records[1], GW, NOW, False)],
                                    late={2: Late(None, None, Fraction(0))}),
                        CATALOG, NOW, HOLD)  # fmt: skip
    (cheaper,) = no_mtd.decisions
    assert isinstance(cheaper, Post)
    assert debit(reference.posted[2]) - debit(cheaper.posting) > 3


def debit(posting: UsagePosting) -> int:
    return -sum(amount for _, amount in posting.lines if amount < 0)


def test_a_span_sent_again_under_a_new_seq_is_refused_as_tamper() -> None:
    hub = Hub()
    one, two = honest(2)
    hub.batch([one, two], NOW)
    copy = two.model_copy(update={"seq": 3})
    plan = hub.batch([copy], NOW)
    assert plan is not None and plan.state is not None
    (tamper,) = plan.decisions
    assert isinstance(tamper, Tamper) and tamper.rule == "interval_overlap"
    assert plan.state.seq == 3 and plan.state.posted == 2  # handled; the register stays at 2
    assert plan.credit is None


def test_a_reported_reset_opens_a_segment_and_unreported_is_tamper() -> None:
    one = record(1, 5000, 6000, 0)
    after = record(2, 100, 400, 1)
    claim = Claim(6000, 0, T0 + STEP, T0 + STEP)
    refused = Hub().batch([one, after], NOW)
    assert refused is not None
    assert [type(d) for d in refused.decisions] == [Post, Tamper]
    hub = Hub()
    plan = hub.batch([one, after], NOW, [claim])  # the claim comes with the batch
    assert plan is not None
    assert [type(d) for d in plan.decisions] == [Post, Reset, Post]
    assert plan.decisions[1] == Reset(METER, 2, 1, claim)
    assert hub.posted[2].segment == 1


def test_shares_that_differ_from_the_hubs_are_a_mismatch() -> None:
    plan = Hub().batch([record(1, 0, 1000, 0, shares={"gen": 1})], NOW)
    assert plan is not None
    mismatch, post = plan.decisions
    assert isinstance(mismatch, Mismatch) and isinstance(post, Post)
    assert mismatch.agent_shares == {"gen": 1}
    assert sum(mismatch.hub_shares.values()) == -sum(a for _, a in post.posting.lines if a < 0)


def test_a_meter_that_cannot_be_rated_quarantines_its_records_and_releases_held_ones() -> None:
    hub = Hub()
    hub.batch([honest(3)[2]], NOW)  # held
    hub.cfg = replace(CFG, tariff_id="gone")
    plan = hub.batch([honest(1)[0]], NOW)
    assert plan is not None
    why = "tariff 'gone' of meter 'gw-0-m0' has no version"
    assert [(type(d), getattr(d, "reason", None)) for d in plan.decisions] == [
        (Quarantine, why), (Quarantine, why), (Release, None)
    ]  # fmt: skip
    assert not hub.held and plan.state is None


def test_a_record_that_fails_to_rate_is_quarantined_alone() -> None:
    mix = {METER: [MixWindow("gen", T0 - STEP, None, {"gen-ghost": 1})]}
    hub = Hub(catalog=Catalog(CATALOG.tariffs, PROVIDERS, mix))
    plan = hub.batch(honest(1), NOW)
    assert plan is not None
    (q,) = plan.decisions
    assert isinstance(q, Quarantine)
    assert q.reason == "meter 'gw-0-m0' seq 1 not rated: KeyError: 'gen-ghost'"
    assert q.error == "KeyError('gen-ghost')"
    unknown = Catalog(CATALOG.tariffs, {"gen": "provider:gen"})
    plan = Hub(catalog=unknown).batch(honest(1), NOW)
    assert plan is not None
    (q,) = plan.decisions
    assert isinstance(q, Quarantine) and q.error is None
    assert q.reason == "tariff 'ibt-tou' names unknown provider(s) ['grid', 'tax']"
