"""One batch of MQTT messages → one database transaction.

``BatchProcessor.process`` validates every message, checks that the sending gateway owns each
meter, deduplicates usage by (meter, seq), rates records per meter in seq order (holding a
record whose predecessor has not arrived, see README.md), posts them through the ledger's
batch API, stores events and gateway status, and quarantines anything invalid with its reason,
all in ONE transaction. Nothing is acknowledged to the broker before that transaction commits
(the service does that), so a crash loses nothing and a redelivery is a duplicate.
"""

from __future__ import annotations

import gc
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import cache, lru_cache, partial
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, delete, func, insert, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError

from hub.control.credit_state import alternate_headroom
from hub.db import is_retryable, read_tx, write_tx
from hub.errors import HubError
from hub.ingest.events import apply_statuses, store_events
from hub.ingest.model import (
    CHUNK,
    EPOCH,
    ONLINE_REFRESH,
    T_ACCOUNTS,
    T_CUSTOMERS,
    T_EVENTS,
    T_GATEWAYS,
    T_METERS,
    T_MISMATCH,
    T_PENDING,
    T_QUARANTINE,
    CreditInfo,
    Inbound,
    MeterCfg,
    Outcome,
    Rec,
    Work,
    event_row,
    record_json,
    usage_topic,
)
from hub.ingest.quota import EventQuota
from hub.ingest.reads import (
    due_pending,
    load_meters,
    load_pending,
    load_states,
    mix_windows,
    posted_edges,
    posted_keys,
    posted_mtd,
    provider_accounts,
    reset_claims,
    save_states,
)
from hub.ingest.restarts import Restarts
from hub.ledger import AccountState, BatchResult, UsagePosting, post_usage_batch
from hub.ledger.bulk import execute_many, select_in
from hub.ledger.posting import apply_deltas
from hub.rating.engine import Rated, rate
from hub.rating.mix import proportions
from hub.rating.payers import SplitRuleError, payer_weights, paying_account, portions
from hub.rating.register import Edge, Placed, Refused, place
from hub.rating.state import MeterState
from hub.rating.tariffs import TariffHistory, load_histories
from hub.tokens.store import setups as token_setups
from protocol import topics
from protocol.errors import ProtocolError
from protocol.messages import (
    MAX_PAYLOAD,
    EventMessage,
    Status,
    UsageMessage,
    UsageRecord,
    parse,
)
from protocol.tariff import Tariff

log = logging.getLogger(__name__)

QUOTA_FLAG_S = 600.0  # at most one event_quota event per gateway this often


class BatchConflictError(HubError):
    """The ledger saw the batch differently (a concurrent writer): roll back and retry."""


class BatchProcessor:
    """Turns batches of inbound messages into ledger postings; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        currency: str = "USD",
        hold_s: float = 30.0,
        owns: Callable[[str], bool] | None = None,
    ) -> None:
        self.engine = engine
        self.currency = currency
        self.hold = timedelta(seconds=hold_s)
        # ``owns(gateway_id)``: whether this processor settles that gateway's meters (several
        # settling processes each own a shard of the gateways; None: all of them). It rates,
        # holds and releases records, and writes rating states, of its own meters only.
        self.owns = owns
        # Meter rating states as last committed by this processor. Each meter's state has one
        # writer (the processor owning its gateway, one consumer per persistent MQTT session),
        # so after a commit the cache equals the table; any failure empties it.
        self._cache: dict[str, MeterState] = {}
        # Event quotas of this processor's gateways (each gateway has one settler).
        self.quota = EventQuota()
        self._quota_flagged: dict[str, float] = {}
        # Gateways whose store started over (a new epoch) and where their meters resume.
        self.restarts = Restarts(owns)

    # -- entry points ------------------------------------------------------------------------

    def process(
        self, items: Sequence[Inbound], now: datetime | None = None, attempts: int = 8
    ) -> Outcome:
        """Process ``items`` in one transaction (retried on transient conflicts).

        A batch that fails for another reason is split and each message processed alone; a
        message that still fails is quarantined with the error. DatabaseUnavailable (the
        database cannot be reached) propagates: the caller retries later, nothing is acked.
        """
        with _gc_paused():
            return self._process(items, now, attempts)

    def release_due(self, now: datetime | None = None) -> Outcome:
        """Post held records whose hold time is over (their gap is skipped)."""
        return self.process([], now)

    # -- transaction ----------------------------------------------------------------------------

    def _process(self, items: Sequence[Inbound], now: datetime | None, attempts: int) -> Outcome:
        try:
            return self._with_retry(items, now, attempts)
        except Exception as exc:  # anything but an unreachable database: isolate, never raise
            if isinstance(exc, DBAPIError) and _unreachable(exc):
                raise
            orig = exc.orig if isinstance(exc, DBAPIError) else None
            why = _one_line(orig or exc)
            if len(items) <= 1:
                log.exception("message failed; quarantined" if items else "release failed")
                return self._quarantine_failed(items, f"internal error: {why}")
            log.warning("batch of %d failed (%s); processing message by message", len(items), why)
        total = Outcome()
        for item in items:
            one = self._process([item], now, attempts)
            total.counts.update(one.counts)
            total.credit.update(one.credit)
            total.settled.update(one.settled)
            total.pending = one.pending
        return total

    def _with_retry(self, items: Sequence[Inbound], now: datetime | None, attempts: int) -> Outcome:
        for attempt in range(1, attempts + 1):
            try:
                outcome = self._run(items, now or datetime.now(UTC))
            except BaseException as exc:
                self._cache.clear()
                self.restarts.forget()
                transient = isinstance(exc, BatchConflictError) or (
                    isinstance(exc, DBAPIError) and is_retryable(exc)
                )
                if not transient or attempt == attempts:
                    raise
            else:
                self._cache.update(outcome.states)
                return outcome
            time.sleep(min(0.5, 0.005 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _quarantine_failed(self, items: Sequence[Inbound], reason: str) -> Outcome:
        work = Work(now=datetime.now(UTC))
        for item in items:
            work.quarantine_payload(item.topic, item.payload, reason)
        if not work.quarantine:  # a release of held records failed: no message to quarantine
            return Outcome(counts=work.counts)
        with write_tx(self.engine) as conn:
            conn.execute(insert(T_QUARANTINE), work.quarantine)
        return Outcome(counts=work.counts)

    def _run(self, items: Sequence[Inbound], now: datetime) -> Outcome:
        """Decode, then rate in a read transaction, then write in one write transaction.

        Rating reads, besides configuration, only rows of this processor's own meters (rating
        states, held and posted records), which no one else writes: so it runs without
        SQLite's write lock, and several settlers rate in parallel and queue only to write.
        Should another writer still post one of the same records, the ledger's (meter, seq)
        check refuses it and the batch is retried from fresh state (``BatchConflictError``).
        """
        work = Work(now=now)
        for item in items:
            self._decode(item, work)
        out = Outcome(counts=work.counts, settled=work.settled)
        with read_tx(self.engine) as conn:
            restarted = self.restarts.screen(conn, work)  # before rating: see restarts.py
            rated = self._usage(conn, work, out)
        with write_tx(self.engine) as conn:
            credits = self._commit_usage(conn, work, out, rated) if rated is not None else {}
            self.restarts.write(conn, restarted, work.now)
            store_events(conn, work, lambda gw: self.quota.admit(gw, time.monotonic()))
            self._flag_quota(conn, work)
            apply_statuses(conn, work)
            if work.quarantine:
                conn.execute(insert(T_QUARANTINE), work.quarantine)
            pending = conn.execute(select(func.count()).select_from(T_PENDING)).scalar_one()
            out.pending = int(pending)
            # The providers' balances last: every settler's batch credits the same few
            # provider rows, whose locks (PostgreSQL) are then held only for the commit.
            apply_deltas(conn, credits)
        self.restarts.committed(restarted)
        return out

    # -- decoding (no database) ---------------------------------------------------------------

    def _decode(self, item: Inbound, work: Work) -> None:
        work.counts["messages"] += 1
        try:
            gateway, kind = _parse_topic(item.topic)
        except ValueError as exc:
            work.quarantine_payload(item.topic, item.payload, str(exc))
            return
        try:
            if kind == "usage":
                usage = _parse_usage(item.payload)
                work.counts["records"] += len(usage.records)
                for r in usage.records:
                    work.usage.append(Rec(r, gateway, item.received_at, False))
            elif kind == "events":
                events = parse(item.payload, EventMessage)
                work.events.extend((gateway, e) for e in events.events)
            elif kind == "status":
                status = parse(item.payload, Status)
                work.statuses[gateway] = status
                work.counts["statuses"] += 1
            else:
                work.quarantine_payload(item.topic, item.payload, f"unexpected topic kind {kind}")
        except ProtocolError as exc:
            work.quarantine_payload(item.topic, item.payload, exc.reason)

    # -- usage --------------------------------------------------------------------------------

    def _usage(  # noqa: PLR0912, PLR0915 (issue 13: split into a pure settlement planner)
        self, conn: Connection, work: Work, out: Outcome
    ) -> RatedUsage | None:
        """Rate the batch's usage (and held records now due): what to write, or None."""
        owns = self.owns
        pending_rows = [r for r in due_pending(conn, work.now - self.hold)
                        if owns is None or owns(r.gateway_id)]  # fmt: skip
        meter_ids = {r.record.meter for r in work.usage} | {r.meter_id for r in pending_rows}
        if not meter_ids:
            return None
        meters = load_meters(conn, meter_ids)
        # A record naming another shard's meter is quarantined below (wrong gateway): its
        # meter's state and held records are that shard's and are not even read here.
        mine = {
            m for m in meter_ids if m in meters and (owns is None or owns(meters[m].gateway_id))
        }
        states = load_states(conn, mine, self._cache)
        held, invalid = load_pending(conn, mine)
        released: list[tuple[str, int]] = []
        for bad in invalid:
            why = f"held record of meter {bad.meter_id!r} seq {bad.seq} is invalid: {bad.reason}"
            work.quarantine_payload(topics.topic(bad.gateway_id, "usage"), bad.text, why)
            released.append((bad.meter_id, bad.seq))
        by_meter: dict[str, list[Rec]] = {}
        seen: set[tuple[str, int]] = set()
        candidates: list[Rec] = []
        for rec in work.usage:
            r = rec.record
            meter = meters.get(r.meter)
            if meter is None:
                work.quarantine_payload(
                    usage_topic(rec), record_json(r), f"unknown meter {r.meter!r}"
                )
                work.settled.record(rec.gateway, r)
                continue
            if meter.gateway_id != rec.gateway:
                why = f"gateway {rec.gateway!r} does not own meter {r.meter!r}"
                work.quarantine_payload(usage_topic(rec), record_json(r), why)
                work.settled.record(rec.gateway, r)
                continue
            key = (r.meter, r.seq)
            if key in seen or key in held:
                work.counts["duplicates"] += 1
                continue
            seen.add(key)
            candidates.append(rec)
        # Posted already? Only a record at or below the meter's contiguous seq can be.
        maybe_posted = [
            (c.record.meter, c.record.seq)
            for c in candidates
            if c.record.meter in states and c.record.seq <= states[c.record.meter].seq
        ]
        posted = posted_keys(conn, maybe_posted)
        for rec in candidates:
            if (rec.record.meter, rec.record.seq) in posted:
                work.counts["duplicates"] += 1
                work.settled.record(rec.gateway, rec.record)  # its receipt may have been lost
            else:
                by_meter.setdefault(rec.record.meter, []).append(rec)
        for rec in held.values():
            by_meter.setdefault(rec.record.meter, []).append(rec)
        seen_meters = {c.record.meter for c in candidates}
        if not by_meter:
            return RatedUsage(meters=meters, seen=seen_meters, released=released)
        tariffs = load_histories(conn, {m.tariff_id for m in meters.values() if m.tariff_id})
        providers = provider_accounts(conn, tariffs.values())
        # Per tariff version, not per record: what it names that has no provider account.
        unknown = {id(t): _unknown_providers(t, providers)
                   for h in tariffs.values() for t in h.tariffs}  # fmt: skip
        mixes = mix_windows(conn, by_meter)
        postings: list[UsagePosting] = []
        to_hold: list[Rec] = []
        events: list[dict[str, Any]] = []
        mismatches: list[dict[str, Any]] = []
        payers: dict[str, tuple[dict[str, int], str]] = {}
        touched: dict[str, tuple[Tariff, MeterState]] = {}
        carries: dict[str, str] = {}
        for meter_id in sorted(by_meter):
            meter = meters[meter_id]
            recs = sorted(by_meter[meter_id], key=lambda c: c.record.seq)
            problem, weights = self._payable(meter, tariffs)
            if problem is not None:
                for rec in recs:
                    work.quarantine_payload(usage_topic(rec), record_json(rec.record), problem)
                    work.settled.record(rec.gateway, rec.record)
                    if rec.pending:
                        released.append((meter_id, rec.record.seq))
                continue
            assert meter.tariff_id is not None
            history = tariffs[meter.tariff_id]
            state = states.get(meter_id) or MeterState()
            oldest = min(rec.received_at for rec in recs)
            release_gap = work.now - oldest >= self.hold
            last_index = -1
            meter_postings: list[UsagePosting] = []
            initial = state
            # the gateway's reported resets: read once per meter, only if a record needs them
            claims = cache(partial(reset_claims, conn, meter_id, meter.gateway_id, work.events))
            for rec in recs:
                r = rec.record
                in_order = r.seq > state.seq
                if in_order and r.seq - r.merged > state.seq and not release_gap:
                    if not rec.pending:
                        to_hold.append(rec)
                        work.counts["held"] += 1
                    continue
                placed: Placed | Refused | None = None
                try:
                    tariff = history.at(r.end)
                    problem = unknown[id(tariff)]
                    if problem is None:
                        # The register rule (hub.rating.register), before rating: an in-order
                        # record follows the newest posted one; a late one must fit between
                        # its posted neighbours.
                        above: Edge | None = None
                        below: Edge | None = None
                        if not in_order:
                            below, above = posted_edges(conn, meter_id, r.seq, meter_postings)
                        elif state.register is not None:
                            below = Edge(state.newest, state.register, state.until,
                                         state.segment)  # fmt: skip
                        placed = place(r.seq, (r.import_start, r.import_end), (r.start, r.end),
                                       below=below, above=above, merged=r.merged,
                                       claims=claims)  # fmt: skip
                    if isinstance(placed, Placed):
                        at = state if placed.reset is None or not in_order else replace(
                            state, segment=placed.segment)  # fmt: skip
                        mtd = None if in_order else posted_mtd(conn, tariff, r)
                        windows = mixes.get(meter_id)
                        mix = proportions(windows, r.start, r.end) if windows else {}
                        rated = rate(tariff, at, r, mix=mix, month_to_date=mtd,
                                     in_order=in_order)  # fmt: skip
                        posting = self._posting(meter, weights=weights, providers=providers,
                                                tariff=tariff, r=r, rated=rated,
                                                segment=placed.segment)  # fmt: skip
                except SQLAlchemyError:
                    raise
                except Exception as exc:  # this record alone; it must not poison the batch
                    log.warning("meter %s seq %d not rated: %r", meter_id, r.seq, exc)
                    problem = f"meter {meter_id!r} seq {r.seq} not rated: {_one_line(exc)}"
                if problem is not None:
                    work.quarantine_payload(usage_topic(rec), record_json(r), problem)
                    work.settled.record(rec.gateway, r)
                    if rec.pending:
                        released.append((meter_id, r.seq))
                    continue
                if in_order and r.seq - r.merged > state.seq:
                    work.counts["gaps_skipped"] += 1
                    why = f"records {state.seq + 1}..{r.seq - r.merged} never arrived in time"
                    events.append(event_row(work.now, "seq_gap", meter_id, why, {"seq": r.seq}))
                if isinstance(placed, Refused):
                    work.quarantine_payload(usage_topic(rec), record_json(r), placed.reason)
                    work.settled.record(rec.gateway, r)
                    events.append(event_row(work.now, "tamper", meter_id, placed.reason,
                                            {"rule": placed.rule, "seq": r.seq}))  # fmt: skip
                    if in_order:  # handled: the records after it need not wait for it
                        state = replace(state, seq=r.seq, posted=state.newest)
                    if rec.pending:
                        released.append((meter_id, r.seq))
                    continue
                assert placed is not None
                if placed.reset is not None:
                    reset = placed.reset
                    events.append(event_row(work.now, "register_reset", meter_id,
                                         f"register went back from {reset.old_wh} to "
                                         f"{reset.new_wh} Wh; segment {placed.segment} starts "
                                         f"at seq {r.seq}",
                                         {"seq": r.seq, "segment": placed.segment}))  # fmt: skip
                if not in_order:
                    work.counts["late"] += 1
                if r.shares:
                    self._check_shares(r, rated, mix=mix, mismatches=mismatches, work=work)
                meter_postings.append(posting)
                state = rated.state
                if not in_order and above is None:  # late, yet the newest posted record
                    state = replace(state, register=r.import_end, until=r.end,
                                    segment=placed.segment,
                                    posted=None if r.seq == state.seq else r.seq)  # fmt: skip
                work.settled.record(rec.gateway, r)
                if rec.pending:
                    released.append((meter_id, r.seq))
                    work.counts["released"] += 1
                last_index = len(meter_postings) - 1
            if last_index >= 0 or state is not initial:
                postings.extend(meter_postings)
                carries[meter_id] = state.dump()
                out.states[meter_id] = state
                if any(p.lines for p in meter_postings):  # the balance changed
                    payers[meter_id] = (weights, paying_account(meter.customer_id, weights))
                    touched[meter_id] = (history.at(work.now), state)
        return RatedUsage(meters=meters, seen=seen_meters, postings=postings, to_hold=to_hold,
                          released=released, events=events, mismatches=mismatches,
                          carries=carries, payers=payers, touched=touched)  # fmt: skip

    def _commit_usage(
        self, conn: Connection, work: Work, out: Outcome, rated: RatedUsage
    ) -> dict[str, int]:
        """Write the rated usage; returns the credits left to apply last (``_run``)."""
        result = self._write_usage(conn, work=work, postings=rated.postings, to_hold=rated.to_hold,
                          released=rated.released, events=rated.events,
                          mismatches=rated.mismatches, carries=rated.carries)  # fmt: skip
        self._mark_online(conn, rated.meters, rated.seen, work)
        posted = result.accounts if result is not None else {}
        if rated.touched:
            self._credit(conn, out, rated.meters, rated.payers, rated.touched, posted=posted)
        return result.deferred if result is not None else {}

    def _write_usage(
        self,
        conn: Connection,
        *,
        work: Work,
        postings: list[UsagePosting],
        to_hold: list[Rec],
        released: list[tuple[str, int]],
        events: list[dict[str, Any]],
        mismatches: list[dict[str, Any]],
        carries: dict[str, str],
    ) -> BatchResult | None:
        result = None
        if released:
            for i in range(0, len(released), CHUNK):
                conn.execute(delete(T_PENDING).where(
                    tuple_(T_PENDING.c.meter_id, T_PENDING.c.seq).in_(released[i : i + CHUNK])
                ))  # fmt: skip
        if to_hold:
            conn.execute(insert(T_PENDING), [
                {"meter_id": h.record.meter, "seq": h.record.seq, "gateway_id": h.gateway,
                 "record": record_json(h.record), "received_at": h.received_at}
                for h in to_hold
            ])  # fmt: skip
        if postings:
            result = post_usage_batch(conn, postings, defer_credits=True)
            if result.duplicates or result.rejected:
                raise BatchConflictError(
                    f"ledger refused part of the batch: {len(result.duplicates)} duplicates, "
                    f"rejected {[(p.meter_id, p.seq, why) for p, why in result.rejected[:3]]}"
                )
            work.counts["posted"] += len(result.posted)
        if carries:  # also states moved past refused records only
            save_states(conn, carries, work.now)
        if events:
            conn.execute(insert(T_EVENTS), events)
        if mismatches:
            conn.execute(insert(T_MISMATCH), mismatches)
        return result

    def _posting(
        self,
        meter: MeterCfg,
        *,
        weights: dict[str, int],
        providers: dict[str, str],
        tariff: Tariff,
        r: UsageRecord,
        rated: Rated,
        segment: int = 0,
    ) -> UsagePosting:
        lines: list[tuple[str, int]] = [(a, -v) for a, v in portions(rated.debit, weights).items()]
        credits: dict[str, int] = {}
        for provider, share in rated.shares.items():
            if share:
                account = providers[provider]
                credits[account] = credits.get(account, 0) + share
        lines.extend(sorted(credits.items()))
        meta: dict[str, Any] = {"tariff": tariff.id, "version": tariff.version,
                                "energy": r.energy}  # fmt: skip
        if meter.split_rule and meter.split_rule.get("selection"):
            meta["selection"] = meter.split_rule["selection"]
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
        )

    def _check_shares(
        self,
        r: UsageRecord,
        rated: Rated,
        *,
        mix: dict[str, dict[str, Fraction]],
        mismatches: list[dict[str, Any]],
        work: Work,
    ) -> None:
        """Record a mismatch if the agent's shares (``r.shares``, not empty) differ from ours."""
        ours: dict[str, int] = {}
        pool_of = {g: pool for pool, gens in mix.items() for g in gens}
        for provider, share in rated.shares.items():
            key = pool_of.get(provider, provider)
            ours[key] = ours.get(key, 0) + share
        theirs = dict(r.shares)
        names = set(ours) | set(theirs)
        if any(ours.get(p, 0) != theirs.get(p, 0) for p in names):
            work.counts["mismatches"] += 1
            mismatches.append({"meter_id": r.meter, "seq": r.seq, "at": work.now,
                               "hub_shares": {p: v for p, v in ours.items() if v},
                               "agent_shares": theirs})  # fmt: skip

    def _payable(
        self, meter: MeterCfg, tariffs: dict[str, TariffHistory]
    ) -> tuple[str | None, dict[str, int]]:
        if meter.problem is not None:
            return meter.problem, {}
        if meter.tariff_id is None:
            return f"meter {meter.id!r} has no tariff", {}
        if meter.tariff_id not in tariffs:
            return f"tariff {meter.tariff_id!r} of meter {meter.id!r} has no version", {}
        try:
            weights = payer_weights(meter.customer_id, tuple(meter.sharers), meter.split_rule)
        except SplitRuleError as exc:
            return f"meter {meter.id!r}: {exc}", {}
        return None, weights

    # -- meter status, events -----------------------------------------------------------------

    def _flag_quota(self, conn: Connection, work: Work) -> None:
        """One ``event_quota`` event per gateway and ``QUOTA_FLAG_S`` while it is over quota."""
        now = time.monotonic()
        rows = []
        for gateway in sorted(work.over_quota):
            if now - self._quota_flagged.get(gateway, -QUOTA_FLAG_S) < QUOTA_FLAG_S:
                continue
            self._quota_flagged[gateway] = now
            why = (
                f"gateway {gateway} sends events beyond its quota of {self.quota.burst:g} "
                f"at once and {self.quota.per_second:g}/s; the rest wait at the gateway"
            )
            rows.append(event_row(work.now, "event_quota", None, why, {"gateway": gateway}))
        if rows:
            conn.execute(insert(T_EVENTS), rows)

    def _mark_online(
        self, conn: Connection, meters: dict[str, MeterCfg], ids: set[str], work: Work
    ) -> None:
        stale = [m for m in sorted(ids) if not meters[m].online
                 or work.now - (meters[m].last_seen_at or EPOCH) > ONLINE_REFRESH]  # fmt: skip
        if not stale:
            return
        execute_many(conn, "UPDATE meters SET online = ?, last_seen_at = ? WHERE id = ?",
                     (T_METERS.c.online, T_METERS.c.last_seen_at, None),
                     [(True, work.now, m) for m in stale])  # fmt: skip

    # -- credit state -------------------------------------------------------------------------

    def _credit(
        self,
        conn: Connection,
        out: Outcome,
        meters: dict[str, MeterCfg],
        payers: dict[str, tuple[dict[str, int], str]],
        touched: dict[str, tuple[Tariff, MeterState]],
        *,
        posted: dict[str, AccountState],
    ) -> None:
        """Each touched meter's credit state. ``posted``: accounts as the ledger read them after
        posting the batch; the balances of other paying accounts (none usually) are read."""
        accounts = sorted({paying for _, paying in payers.values()})
        balances = {a: posted[a].balance for a in accounts if a in posted}
        unread = [a for a in accounts if a not in posted]
        balances.update(select_in(conn, T_ACCOUNTS, ("id", "balance"), "id", unread))
        customers = {cid: (flags, protected) for cid, flags, protected in select_in(
            conn, T_CUSTOMERS, ("id", "flags", "protected"), "id", accounts)}  # fmt: skip
        headroom = alternate_headroom(conn, customers)
        gateways = sorted({meters[m].gateway_id for m in touched})
        keys: dict[str, str] = dict(select_in(conn, T_GATEWAYS, ("id", "command_key"), "id",
                                              gateways))  # fmt: skip
        tokens = token_setups(conn, {m: keys.get(meters[m].gateway_id, "") for m in touched})
        for meter_id, (tariff, state) in touched.items():
            paying = payers[meter_id][1]
            meter = meters[meter_id]
            flags, protected = customers.get(paying, (None, False))
            out.credit[meter_id] = CreditInfo(
                meter_id=meter_id,
                gateway_id=meter.gateway_id,
                command_key=keys.get(meter.gateway_id, ""),
                account_id=paying,
                balance=int(balances.get(paying, 0)),
                tariff=tariff,
                state=state,
                flags=flags,
                protected=bool(protected),
                alternate_available=headroom.get(paying, 0),
                tokens=tokens.get(meter_id),
            )


@dataclass
class RatedUsage:
    """A batch's usage rated and ready to write (``BatchProcessor._commit_usage``)."""

    meters: dict[str, MeterCfg]
    seen: set[str]  # meters that sent records (marked online)
    postings: list[UsagePosting] = field(default_factory=list)
    to_hold: list[Rec] = field(default_factory=list)
    released: list[tuple[str, int]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    carries: dict[str, str] = field(default_factory=dict)
    payers: dict[str, tuple[dict[str, int], str]] = field(default_factory=dict)
    touched: dict[str, tuple[Tariff, MeterState]] = field(default_factory=dict)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic garbage collector paused for one batch. A batch keeps tens of thousands of
    objects (records, postings, rows) alive until it commits: the collector, triggered by their
    allocation, would traverse them again and again (and the whole heap at each full collection)
    for about a fifth of the batch's CPU, only to find them still alive. Nearly all of them are
    freed by reference counting when the batch ends; the few cycles wait for the next
    collection after it. Left alone if the collector is already off (e.g. by the caller)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _unknown_providers(tariff: Tariff, providers: dict[str, str]) -> str | None:
    missing = [p for p in tariff.providers if p not in providers]
    if missing:
        return f"tariff {tariff.id!r} names unknown provider(s) {missing}"
    return None


# A gateway sends on the same few topics all day: parsed once each (the topic's two regular
# expressions cost a tenth of decoding a usage message). Bad topics raise, so are not kept.
_parse_topic = lru_cache(maxsize=4096)(topics.parse)


def _parse_usage(payload: bytes) -> UsageMessage:
    """``parse(payload, UsageMessage)``, via pydantic's JSON parser when the payload is valid
    (about twice as fast); an invalid payload goes through ``parse`` for its one-line reason."""
    if len(payload) <= MAX_PAYLOAD:
        try:
            return UsageMessage.model_validate_json(payload)
        except ValidationError:
            pass
    return parse(payload, UsageMessage)


def _one_line(exc: BaseException) -> str:
    """``exc`` as one line of at most 300 characters, its type named, for a quarantine row."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


def _unreachable(exc: DBAPIError) -> bool:
    """The database cannot be reached (rather than refusing this batch)."""
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        return any(s in text for s in ("connect", "connection", "server closed", "unable to open",
                                       "disk i/o", "terminating"))  # fmt: skip
    return False
