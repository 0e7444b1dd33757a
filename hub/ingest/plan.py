"""The settlement plan of a batch's usage: what to post, hold, release, quarantine. Pure.

No database and no I/O: the batch processor (``hub.ingest.batch``) reads everything first, as
plain data, asks this module what to do, and writes the answer in one transaction
(read → plan → write, README.md). Two steps:

* :func:`triage` (the whole batch): a record of an unknown meter, or sent by a gateway that
  does not own its meter, is quarantined; a second copy in the batch, or a copy of a held
  record, is a duplicate; a held row that no longer validates is quarantined and released.
* :func:`plan_meter` (one meter, its new and held records together, in seq order): a record
  already posted is a duplicate (its receipt may have been lost); a record whose predecessor
  has not arrived is held, until the oldest of the meter's records is ``hold`` old, when the
  gap is skipped; every other record is placed in the meter's register
  (``hub.rating.register.place``: refused as ``tamper``, or posted, maybe opening a register
  segment after a reported reset), rated on top of the meter's rating state
  (``hub.rating.engine.rate``), and posted; a record that fails to rate is quarantined alone.
  It is rated with the tariff version in force, or, for a meter whose pricing (in force at the
  record's start, ``Catalog.pricing``) is a selection, with the providers its policy chooses
  for the interval (``hub.rating.pricing.choose``), the choice recorded in the entry and a
  ``priority`` choice's fee posted to the platform (:func:`priority_fees`).

A record at or below the meter's contiguous seq (:func:`late_records`) is rated "late": its
place and month-to-date energy come from the posted records around it, which the processor
reads for exactly those records (:class:`Late`). The gateway's reported register resets are
needed only by a record that could open a register segment, which is rare: planned without
them (``claims=None``), a meter whose plan needed them says so (``MeterPlan.needs_claims``) and
is planned again with them.

The decisions are frozen dataclasses in the order the processor applies them; the rating state
a meter ends with comes with them (:class:`MeterPlan`).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import lru_cache
from typing import Any

from hub.ingest.model import InvalidHeld, MeterCfg, Rec
from hub.ledger import UsagePosting
from hub.rating.engine import Rated, rate
from hub.rating.mix import MixWindow, proportions
from hub.rating.payers import (
    SplitRuleError,
    payer_weights,
    paying_account,
    period_at,
    portions,
)
from hub.rating.pricing import Choice, Market, MeterPricing, Step, choose
from hub.rating.register import Claim, Edge, Placed, Refused, place
from hub.rating.selection import SelectionError
from hub.rating.state import MeterState
from hub.rating.tariffs import TariffHistory
from protocol.apportion import apportion
from protocol.messages import UsageRecord
from protocol.tariff import Tariff

# -- decisions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Post:
    """Post ``posting`` (the record rated); ``late``: rated below the contiguous seq."""

    rec: Rec
    posting: UsagePosting
    late: bool = False


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep the record in the held table until its predecessor arrives (already there if
    ``rec.pending``)."""

    rec: Rec


@dataclass(frozen=True, slots=True)
class Release:
    """Remove ``(meter, seq)`` from the held table; ``posted``: the record was posted (else
    quarantined or refused)."""

    meter: str
    seq: int
    posted: bool = False


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Do not post the record: quarantine it with ``reason``. ``error``: the exception that
    stopped it from being rated (logged), if that was the reason."""

    rec: Rec
    reason: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tamper:
    """The register rule refused the record: quarantine it and raise a ``tamper`` event."""

    rec: Rec
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class Gap:
    """Records ``first..last`` of ``meter`` never arrived within the hold time: skipped, and a
    ``seq_gap`` event (``seq``: the record posted after the gap)."""

    meter: str
    seq: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Reset:
    """The record ``seq`` opens register ``segment`` after the reported reset ``claim``: a
    ``register_reset`` event from the hub."""

    meter: str
    seq: int
    segment: int
    claim: Claim


@dataclass(frozen=True, slots=True)
class Mismatch:
    """The agent's shares of record ``seq`` differ from the hub's (no money effect)."""

    meter: str
    seq: int
    hub_shares: dict[str, int]
    agent_shares: dict[str, int]


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A copy of a record in the batch or held (``posted`` False), or of one already posted
    (``posted``: settled again, since the gateway may have lost its receipt)."""

    rec: Rec
    posted: bool = False


@dataclass(frozen=True, slots=True)
class Invalid:
    """A held row that no longer passes validation: quarantined and released."""

    held: InvalidHeld


Decision = (
    Post | Hold | Release | Quarantine | Tamper | Gap | Reset | Mismatch | Duplicate | Invalid
)


# -- inputs and plans --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Late:
    """The database around a late record: the meter's posted records nearest below and above
    its seq (``hub.rating.register.Edge``) and the energy posted in its month (in the zone of
    the tariff in force at its end) before it starts."""

    below: Edge | None
    above: Edge | None
    mtd: Fraction


@dataclass(frozen=True)
class Catalog:
    """What rating reads besides the meters: tariff histories by tariff id, provider accounts
    by provider (generators of mixes included), each meter's generation-mix windows, the
    pricing history of each meter that has one (``hub.rating.pricing``: a tariff or a
    selection from a moment on), what provider selection decides with (``market``) and the
    platform's account, to which priority fees are posted (None: not opened)."""

    tariffs: Mapping[str, TariffHistory] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)
    mixes: Mapping[str, Sequence[MixWindow]] = field(default_factory=dict)
    pricing: Mapping[str, MeterPricing] = field(default_factory=dict)
    market: Market = field(default_factory=Market)
    platform: str | None = None
    # per tariff version (by identity: the versions live in ``tariffs``), the providers it
    # names that have no account: found once per batch, not per record
    unknown: dict[int, str | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = {id(t): _unknown_providers(t, self.providers)
                   for h in self.tariffs.values() for t in h.tariffs}  # fmt: skip
        object.__setattr__(self, "unknown", unknown)


@dataclass(frozen=True)
class MeterInputs:
    """One meter's part of a batch, as read.

    ``records``: its new records (first copies, any order) and its held ones (``pending``);
    ``posted``: the seqs of new records already posted; ``late``: per seq, what the database
    says around each of :func:`late_records`; ``claims``: the register resets its gateway
    reported (stored and in this batch), or None when not read."""

    meter: MeterCfg
    state: MeterState
    records: Sequence[Rec]
    posted: Container[int] = frozenset()
    late: Mapping[int, Late] = field(default_factory=dict)
    claims: Sequence[Claim] | None = None


@dataclass(frozen=True, slots=True)
class Credit:
    """A meter whose paying balance the plan changes: its paying account and the tariff
    version in force at the plan's time (for its credit state): for a meter priced by a
    selection, the chosen providers' tariff, and the choice (``selection``)."""

    account: str
    tariff: Tariff
    selection: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MeterPlan:
    """What to do with one meter's records, in order. ``state``: the rating state to write
    (None: unchanged); ``credit``: set when records were posted or the agent priced one
    otherwise; ``needs_claims``: planned without the gateway's reset claims while a record
    needed them: plan again with them."""

    meter: str
    decisions: tuple[Decision, ...]
    state: MeterState | None = None
    credit: Credit | None = None
    needs_claims: bool = False


@dataclass(frozen=True, slots=True)
class Triage:
    """A batch's usage sorted: ``decisions`` about records that go no further, and the first
    copy of every other new record (``candidates``, in arrival order)."""

    decisions: tuple[Decision, ...]
    candidates: tuple[Rec, ...]


# -- the batch ---------------------------------------------------------------------------------


def triage(
    usage: Iterable[Rec],
    meters: Mapping[str, MeterCfg],
    held: Container[tuple[str, int]],
    invalid: Iterable[InvalidHeld] = (),
) -> Triage:
    """Quarantine invalid held rows and records of unknown or foreign meters; drop copies of
    a record in the batch or held (``held``: the keys of the held records of the batch's
    meters)."""
    decisions: list[Decision] = [Invalid(bad) for bad in invalid]
    seen: set[tuple[str, int]] = set()
    candidates: list[Rec] = []
    for rec in usage:
        r = rec.record
        meter = meters.get(r.meter)
        if meter is None:
            decisions.append(Quarantine(rec, f"unknown meter {r.meter!r}"))
            continue
        if meter.gateway_id != rec.gateway:
            why = f"gateway {rec.gateway!r} does not own meter {r.meter!r}"
            decisions.append(Quarantine(rec, why))
            continue
        key = (r.meter, r.seq)
        if key in seen or key in held:
            decisions.append(Duplicate(rec))
            continue
        seen.add(key)
        candidates.append(rec)
    return Triage(tuple(decisions), tuple(candidates))


def late_records(inputs: MeterInputs, catalog: Catalog) -> list[tuple[UsageRecord, Tariff]]:
    """The records :func:`plan_meter` rates late (at or below the contiguous seq, not
    posted), each with the tariff version in force at its end, for which it needs
    ``inputs.late``; none if the meter's records cannot be rated at all."""
    state = inputs.state
    late = [rec.record for rec in inputs.records
            if rec.record.seq <= state.seq and rec.record.seq not in inputs.posted]  # fmt: skip
    if not late or _payable(inputs.meter, catalog)[0] is not None:
        return []
    pricing = pricing_of(inputs.meter, catalog)
    # the month's zone: every candidate of a selection has the same (hub.rating.pricing)
    return [(r, catalog.tariffs[pricing.at(r.start).tariff_ids[0]].at(r.end)) for r in late]


def pricing_of(meter: MeterCfg, catalog: Catalog) -> MeterPricing:
    """The meter's pricing history: as read, or its tariff alone."""
    found = catalog.pricing.get(meter.id)
    if found is not None:
        return found
    return _tariff_alone(str(meter.tariff_id))


@lru_cache(maxsize=4096)
def _tariff_alone(tariff_id: str) -> MeterPricing:
    """The pricing history of a meter priced by its tariff alone: one (frozen) object per
    tariff, not one per meter and batch."""
    return MeterPricing((Step(datetime.min.replace(tzinfo=UTC), tariff_id),))


def choice_at(
    meter: MeterCfg, catalog: Catalog, start: datetime, end: datetime, energy: int
) -> tuple[Choice, list[Tariff]]:
    """How the interval ``[start, end)`` of ``energy`` is priced (``hub.rating.pricing``), and
    the candidate tariff versions the choice was made among."""
    step = pricing_of(meter, catalog).at(start)
    versions = [catalog.tariffs[t].at(end) for t in step.tariff_ids]
    choice = choose(step, versions, catalog.market, meter.customer_id, (start, end, energy))
    return choice, versions


# -- one meter ---------------------------------------------------------------------------------


def plan_meter(inputs: MeterInputs, catalog: Catalog, now: datetime, hold: timedelta) -> MeterPlan:
    """The decisions about one meter's records (see the module), and its new rating state."""
    meter = inputs.meter
    decisions: list[Decision] = []
    recs: list[Rec] = []
    for rec in inputs.records:
        if not rec.pending and rec.record.seq in inputs.posted:
            decisions.append(Duplicate(rec, posted=True))
        else:
            recs.append(rec)
    if not recs:
        return MeterPlan(meter.id, tuple(decisions))
    recs.sort(key=lambda c: c.record.seq)
    problem, weights = _payable(meter, catalog)
    if problem is not None:
        for rec in recs:
            decisions.append(Quarantine(rec, problem))
            if rec.pending:
                decisions.append(Release(meter.id, rec.record.seq))
        return MeterPlan(meter.id, tuple(decisions))
    oldest = min(rec.received_at for rec in recs)
    run = _Run(inputs, catalog, weights, decisions)
    run.settle(recs, release_gap=now - oldest >= hold)
    if not run.postings and run.state is inputs.state:
        return MeterPlan(meter.id, tuple(decisions), needs_claims=run.asked_claims)
    credit = None
    # Posted (even at no cost: the agent's chain moves on, hub.commands.baseline), or priced
    # otherwise by the agent (its figure is off: a state must follow).
    if run.postings or any(isinstance(d, Mismatch) for d in decisions):
        credit = _credit(meter, catalog, paying_account(meter.customer_id, weights), now)
    return MeterPlan(meter.id, tuple(decisions), run.state, credit, run.asked_claims)


def _credit(meter: MeterCfg, catalog: Catalog, account: str, now: datetime) -> Credit | None:
    """The tariff (and choice) the meter's credit state carries now; None when no valid
    choice exists now (the state is not sent)."""
    try:
        choice, _ = choice_at(meter, catalog, now, now, 0)
    except SelectionError:
        return None
    return Credit(account, choice.tariff, choice.meta)


class _Run:
    """One meter's records planned in seq order: the rating state as it moves, the postings
    so far (a late record's neighbours may be among them) and the decisions."""

    def __init__(
        self,
        inputs: MeterInputs,
        catalog: Catalog,
        weights: dict[str, int],
        decisions: list[Decision],
    ) -> None:
        self.inputs = inputs
        self.catalog = catalog
        self.weights = weights
        self.decisions = decisions
        self.state = inputs.state
        self.postings: list[UsagePosting] = []
        self.windows = catalog.mixes.get(inputs.meter.id)
        self.asked_claims = False
        self.by_period: dict[datetime, dict[str, int]] = {}
        # a meter priced by its tariff alone (the usual case): its history, and the choice
        # per version (one object per version, not per record)
        meter = inputs.meter
        self.history = (
            None if meter.id in catalog.pricing else catalog.tariffs[str(meter.tariff_id)]
        )
        self.plain: dict[int, tuple[Choice, list[Tariff]]] = {}

    def weights_at(self, moment: datetime) -> dict[str, int]:
        """The payers' weights for an interval starting at ``moment``: the meter's payer
        history's period then (``hub.rating.payers.period_at``), else its current payers."""
        meter = self.inputs.meter
        if not meter.periods:
            return self.weights
        period = period_at(meter.periods, moment)
        if period.start not in self.by_period:
            self.by_period[period.start] = payer_weights(period.customer, period.sharers,
                                                         meter.split_rule)  # fmt: skip
        return self.by_period[period.start]

    def choice(self, r: UsageRecord) -> tuple[Choice, list[Tariff]]:
        """How record ``r`` is priced (:func:`choice_at`)."""
        if self.history is None:
            return choice_at(self.inputs.meter, self.catalog, r.start, r.end, r.energy)
        tariff = self.history.at(r.end)
        found = self.plain.get(id(tariff))
        if found is None:
            found = self.plain[id(tariff)] = (Choice(tariff), [tariff])
        return found

    def claims(self) -> Sequence[Claim]:
        """The gateway's reset claims (``place`` asks only when a record could open a
        segment); noted if they were not read."""
        if self.inputs.claims is None:
            self.asked_claims = True
            return ()
        return self.inputs.claims

    def settle(self, recs: list[Rec], *, release_gap: bool) -> None:
        for rec in recs:
            r = rec.record
            state = self.state
            in_order = r.seq > state.seq
            gap = in_order and r.seq - r.merged > state.seq
            if gap and not release_gap:
                self.decisions.append(Hold(rec))
                continue
            self.record(rec, in_order=in_order, gap=gap)

    def record(self, rec: Rec, *, in_order: bool, gap: bool) -> None:
        r = rec.record
        state = self.state
        meter_id = self.inputs.meter.id
        placed: Placed | Refused | None = None
        newest = False
        problem: str | None = None
        error: str | None = None
        try:
            choice, versions = self.choice(r)
            problem = next(filter(None, (self.catalog.unknown[id(t)] for t in versions)), None)
            if problem is None and choice.fees and self.catalog.platform is None:
                problem = "priority fees are owed but the platform has no account"
            if problem is None:
                placed, newest = self.place(r, in_order=in_order)
            if isinstance(placed, Placed):
                rated, mix, posting = self.rate(r, choice, placed, in_order=in_order)
        except Exception as exc:  # this record alone; it must not poison the batch
            problem = f"meter {meter_id!r} seq {r.seq} not rated: {one_line(exc)}"
            error = repr(exc)
        if problem is not None:
            self.decisions.append(Quarantine(rec, problem, error))
            self.release(rec)
            return
        if gap:
            self.decisions.append(Gap(meter_id, r.seq, state.seq + 1, r.seq - r.merged))
        if isinstance(placed, Refused):
            self.decisions.append(Tamper(rec, placed.rule, placed.reason))
            if in_order:  # handled: the records after it need not wait for it
                self.state = replace(state, seq=r.seq, posted=state.newest)
            self.release(rec)
            return
        assert placed is not None
        if placed.reset is not None:
            self.decisions.append(Reset(meter_id, r.seq, placed.segment, placed.reset))
        if r.shares:
            self.check_shares(r, rated, mix)
        self.decisions.append(Post(rec, posting, late=not in_order))
        self.postings.append(posting)
        self.state = rated.state
        if not in_order and newest:  # late, yet the newest posted record
            self.state = replace(self.state, register=r.import_end, until=r.end,
                                 segment=placed.segment,
                                 posted=None if r.seq == self.state.seq else r.seq)  # fmt: skip
        self.release(rec, posted=True)

    def release(self, rec: Rec, *, posted: bool = False) -> None:
        if rec.pending:
            self.decisions.append(Release(rec.record.meter, rec.record.seq, posted))

    def place(self, r: UsageRecord, *, in_order: bool) -> tuple[Placed | Refused, bool]:
        """The register rule (``hub.rating.register``), before rating: an in-order record
        follows the newest posted one; a late one must fit between its posted neighbours.
        Also: whether no posted record is above it."""
        state = self.state
        above: Edge | None = None
        below: Edge | None = None
        if not in_order:
            late = self.inputs.late[r.seq]
            below, above = nearest(late.below, late.above, r.seq, self.postings)
        elif state.register is not None:
            below = Edge(state.newest, state.register, state.until, state.segment)
        placed = place(r.seq, (r.import_start, r.import_end), (r.start, r.end), below=below,
                       above=above, merged=r.merged, claims=self.claims)  # fmt: skip
        return placed, above is None

    def rate(
        self, r: UsageRecord, choice: Choice, placed: Placed, *, in_order: bool
    ) -> tuple[Rated, dict[str, dict[str, Fraction]], UsagePosting]:
        state = self.state
        at = state if placed.reset is None or not in_order else replace(
            state, segment=placed.segment)  # fmt: skip
        mtd = None if in_order else self.inputs.late[r.seq].mtd
        windows = self.windows
        mix = proportions(windows, r.start, r.end) if windows else {}
        rated = rate(choice.tariff, at, r, mix=mix, month_to_date=mtd, in_order=in_order)
        fees: dict[str, int] = {}
        if choice.fees:
            fees, carry = priority_fees(choice.fees, r.energy, rated.state.fees)
            rated = replace(rated, state=replace(rated.state, fees=carry))
        return rated, mix, self.posting(choice, r, rated, placed.segment, fees, mix=mix)

    def posting(
        self, choice: Choice, r: UsageRecord, rated: Rated, segment: int, fees: dict[str, int],
        *, mix: Mapping[str, Mapping[str, Fraction]],
    ) -> UsagePosting:  # fmt: skip
        meter = self.inputs.meter
        tariff = choice.tariff
        lines: list[tuple[str, int]] = [
            (a, -v) for a, v in portions(rated.debit, self.weights_at(r.start)).items()
        ]
        providers = self.catalog.providers
        credits: dict[str, int] = {}
        for provider, share in rated.shares.items():
            if share:
                account = providers[provider]
                credits[account] = credits.get(account, 0) + share
        lines.extend(sorted(credits.items()))
        meta: dict[str, Any] = {"tariff": tariff.id, "version": tariff.version,
                                "energy": r.energy}  # fmt: skip
        if mix:  # the measured supply mix used (hub.rating.mix), exact fractions per pool
            meta["mix"] = {pool: {g: str(v) for g, v in sorted(gens.items())}
                           for pool, gens in sorted(mix.items())}  # fmt: skip
        if choice.meta is not None:
            meta["selection"] = choice.meta
        paid = {p: v for p, v in sorted(fees.items()) if v}
        if paid:
            # the provider's priority fee, a line of its own to the platform's account
            assert self.catalog.platform is not None
            for provider, fee in paid.items():
                lines.append((providers[provider], -fee))
            lines.append((self.catalog.platform, sum(paid.values())))
            meta["priority_fees"] = paid
        return UsagePosting(
            meter_id=meter.id,
            seq=r.seq,
            import_start=r.import_start,
            import_end=r.import_end,
            lines=lines,
            currency=tariff.currency,
            interval_start=r.start,
            interval_end=r.end,
            metadata=meta,
            segment=segment,
            current_mean_a=r.current_mean_a,
        )

    def check_shares(
        self, r: UsageRecord, rated: Rated, mix: Mapping[str, Mapping[str, Fraction]]
    ) -> None:
        """A mismatch if the agent's shares (``r.shares``, not empty) differ from ours."""
        ours: dict[str, int] = {}
        pool_of = {g: pool for pool, gens in mix.items() for g in gens}
        for provider, share in rated.shares.items():
            key = pool_of.get(provider, provider)
            ours[key] = ours.get(key, 0) + share
        theirs = dict(r.shares)
        names = set(ours) | set(theirs)
        if any(ours.get(p, 0) != theirs.get(p, 0) for p in names):
            hub = {p: v for p, v in ours.items() if v}
            self.decisions.append(Mismatch(r.meter, r.seq, hub, theirs))


def nearest(
    below: Edge | None, above: Edge | None, seq: int, postings: Iterable[UsagePosting]
) -> tuple[Edge | None, Edge | None]:
    """The posted records nearest below and above ``seq``: ``below`` and ``above`` (from the
    database), or one of ``postings`` (planned in this batch, not yet written) nearer."""
    for u in postings:
        if u.seq < seq and (below is None or u.seq > (below.seq or 0)):
            below = Edge(u.seq, u.import_end, u.interval_end, u.segment)
        elif u.seq > seq and (above is None or u.seq < (above.seq or 0)):
            above = Edge(u.seq, u.import_start, u.interval_start, u.segment)
    return below, above


def priority_fees(
    rates: Mapping[str, Fraction], energy: int, carry: Mapping[str, Fraction]
) -> tuple[dict[str, int], dict[str, Fraction]]:
    """Each provider's priority fee for ``energy`` (``rates``: minor units per base unit) in
    whole minor units, on top of its carried remainder (``MeterState.fees``, each provider's
    own: fees never round into one another); and the new carry."""
    fees: dict[str, int] = {}
    out = dict(carry)
    for provider, fee_rate in sorted(rates.items()):
        one = {provider: out.pop(provider, Fraction(0))}
        shares, rest = apportion({provider: fee_rate * energy}, one)
        fees[provider] = shares[provider]
        out.update({p: v for p, v in rest.items() if v})
    return fees, out


def _payable(meter: MeterCfg, catalog: Catalog) -> tuple[str | None, dict[str, int]]:
    """Why none of the meter's records can be rated, or its payers' weights."""
    if meter.problem is not None:
        return meter.problem, {}
    if meter.tariff_id is None and meter.id not in catalog.pricing:
        return f"meter {meter.id!r} has no tariff", {}
    for tariff_id in sorted(pricing_of(meter, catalog).tariff_ids):
        if tariff_id not in catalog.tariffs:
            return f"tariff {tariff_id!r} of meter {meter.id!r} has no version", {}
    try:
        weights = payer_weights(meter.customer_id, tuple(meter.sharers), meter.split_rule)
    except SplitRuleError as exc:
        return f"meter {meter.id!r}: {exc}", {}
    return None, weights


def _unknown_providers(tariff: Tariff, providers: Mapping[str, str]) -> str | None:
    missing = [p for p in tariff.providers if p not in providers]
    if missing:
        return f"tariff {tariff.id!r} names unknown provider(s) {missing}"
    return None


def one_line(exc: BaseException) -> str:
    """``exc`` as one line of at most 300 characters, its type named, for a quarantine row."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]
