"""One batch of MQTT messages → one database transaction.

``BatchProcessor.process`` validates every message, reads what the batch's usage needs
(``hub.ingest.reads``), has the pure planner (``hub.ingest.plan``) decide it (the sending
gateway must own each meter; deduplicated by (meter, seq); rated per meter in seq order, a
record whose predecessor has not arrived held, see README.md; anything invalid quarantined
with its reason), and writes the plan through the ledger's batch API, with events and gateway
status, all in ONE transaction. Nothing is acknowledged to the broker before that transaction
commits (the service does that), so a crash loses nothing and a redelivery is a duplicate.
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
from functools import lru_cache
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, delete, func, insert, select, tuple_
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from hub.audit import usage_audit_rows
from hub.commands import baseline
from hub.commands.baseline import StateDigests
from hub.commands.chain import Chain
from hub.control.combined import combine
from hub.control.credit_state import alternate_headroom, payer_credits
from hub.db import is_retryable, read_tx, write_tx
from hub.errors import HubError
from hub.ingest.credit_report import Digest, MeterDigests, report
from hub.ingest.events import apply_statuses, store_events
from hub.ingest.group import lock_gateways
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
    one_line,
    plan_meter,
    triage,
)
from hub.ingest.quota import EventQuota
from hub.ingest.reads import (
    due_pending,
    late_context,
    load_meters,
    load_pending,
    load_states,
    mix_windows,
    posted_keys,
    pricing_inputs,
    provider_accounts,
    reset_claims,
    save_states,
)
from hub.ingest.restarts import Restarts, Screened
from hub.ledger import AccountState, BatchResult, UsagePosting, post_usage_batch
from hub.ledger.bulk import bind_values, bulk_insert, execute_many, select_in
from hub.ledger.posting import apply_deltas
from hub.rating.payers import SplitRuleError, contributors, payer_weights
from hub.rating.state import MeterState
from hub.rating.tariffs import load_histories, version_counts
from hub.tokens.store import setups as token_setups
from protocol import topics
from protocol.errors import ProtocolError
from protocol.messages import (
    MAX_PAYLOAD,
    EventMessage,
    Status,
    UsageMessage,
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
        *,
        shared: bool = False,
        credit_refresh_s: float = 21_600,
    ) -> None:
        self.engine = engine
        self.currency = currency
        self.hold = timedelta(seconds=hold_s)
        # a meter's agent is sent its credit state at least this often, even when it works the
        # state out alone (``hub.ingest.credit_report``)
        self.credit_refresh = timedelta(seconds=credit_refresh_s)
        # ``owns(gateway_id)``: whether this processor settles that gateway's meters (several
        # settling processes each own a shard of the gateways; None: all of them). It rates,
        # holds and releases records, and writes rating states, of its own meters only.
        self.shard_owns = owns
        # ``shared``: other processes settle the same gateways (an ingest group, PostgreSQL,
        # ``hub.ingest.group``): a batch settles a gateway only under its lock, in one
        # transaction, reading every state afresh (nothing cached between batches).
        self.shared = shared
        self._locked: set[str] = set()
        self.owns = self._owns_locked if shared else owns
        # Meter rating states as last committed by this processor. Each meter's state has one
        # writer (the processor owning its gateway, one consumer per persistent MQTT session),
        # so after a commit the cache equals the table; any failure empties it. Unused when
        # ``shared``.
        self._cache: dict[str, MeterState] = {}
        # Event quotas of this processor's gateways (each gateway has one settler).
        self.quota = EventQuota()
        self._quota_flagged: dict[str, float] = {}
        # Gateways whose store started over (a new epoch) and where their meters resume.
        self.restarts = Restarts(self.owns)
        # What each meter's credit state hashed to, and from what (``hub.ingest.credit_report``).
        self._digests = MeterDigests()

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
            why = one_line(orig or exc)
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

    def _owns_locked(self, gateway: str) -> bool:
        """Shared: a gateway this batch holds the lock of (and this process's shard owns)."""
        own = self.shard_owns
        return gateway in self._locked and (own is None or own(gateway))

    def _run(self, items: Sequence[Inbound], now: datetime) -> Outcome:
        if self.shared:
            return self._run_locked(items, now)
        return self._run_alone(items, now)

    def _run_locked(self, items: Sequence[Inbound], now: datetime) -> Outcome:
        """``_run_alone`` for a shared processor: read, plan and write in ONE transaction that
        first locks every gateway it touches (``hub.ingest.group``)."""
        work, out = self._decoded(items, now)
        self._cache.clear()
        self.restarts.forget()
        with write_tx(self.engine) as conn:
            gateways = {r.gateway for r in work.usage} | {g for g, _ in work.events}
            gateways |= set(work.statuses)
            gateways |= {r.gateway_id for r in due_pending(conn, work.now - self.hold)}
            own = self.shard_owns
            self._locked = {g for g in gateways if own is None or own(g)}
            lock_gateways(conn, self._locked)
            try:
                restarted = self.restarts.screen(conn, work)
                rated = self._usage(conn, work, out)
                self._write(conn, work, out, rated, restarted)
            finally:
                self._locked = set()
        self.restarts.forget()
        return out

    def _run_alone(self, items: Sequence[Inbound], now: datetime) -> Outcome:
        """Decode, then rate in a read transaction, then write in one write transaction (on
        PostgreSQL both in one transaction, see below).

        Rating reads, besides configuration, only rows of this processor's own meters (rating
        states, held and posted records), which no one else writes: so it runs without
        SQLite's write lock, and several settlers rate in parallel and queue only to write.
        Should another writer still post one of the same records, the ledger's (meter, seq)
        check refuses it and the batch is retried from fresh state (``BatchConflictError``).
        """
        work, out = self._decoded(items, now)
        if self.engine.dialect.name == "postgresql":
            # No write lock to spare: reading takes no lock, and under READ COMMITTED each
            # statement sees what is committed when it runs, as in two transactions. One
            # transaction saves a connection checkout (with its ping) and a commit per batch.
            with write_tx(self.engine) as conn:
                restarted = self.restarts.screen(conn, work)
                rated = self._usage(conn, work, out)
                self._write(conn, work, out, rated, restarted)
        else:
            with read_tx(self.engine) as conn:
                restarted = self.restarts.screen(conn, work)  # before rating: see restarts.py
                rated = self._usage(conn, work, out)
            with write_tx(self.engine) as conn:
                self._write(conn, work, out, rated, restarted)
        self.restarts.committed(restarted)
        return out

    def _write(
        self,
        conn: Connection,
        work: Work,
        out: Outcome,
        rated: RatedUsage | None,
        restarted: Screened,
    ) -> None:
        """Everything the batch decided, in the write transaction ``conn``."""
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

    # -- decoding (no database) ---------------------------------------------------------------

    def _decoded(self, items: Sequence[Inbound], now: datetime) -> tuple[Work, Outcome]:
        work = Work(now=now)
        for item in items:
            self._decode(item, work)
        return work, Outcome(counts=work.counts, settled=work.settled)

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

    # -- usage: read, plan (hub.ingest.plan, pure), gather what to write ----------------------

    def _usage(self, conn: Connection, work: Work, out: Outcome) -> RatedUsage | None:
        """The batch's usage (and held records now due) read, planned and gathered into what
        to write, or None if there is none."""
        read = self._read(conn, work)
        if read is None:
            return None
        plans = [plan_meter(i, read.catalog, work.now, self.hold) for i in read.inputs]
        asking = {p.meter: read.meters[p.meter].gateway_id for p in plans if p.needs_claims}
        if asking:  # records that could open a register segment: the resets reported, again
            claims = reset_claims(conn, asking, work.events)
            plans = [
                plan_meter(replace(i, claims=claims[p.meter]), read.catalog, work.now, self.hold)
                if p.meter in asking else p
                for i, p in zip(read.inputs, plans, strict=True)
            ]  # fmt: skip
        return self._gather(work, out, read, plans)

    def _read(self, conn: Connection, work: Work) -> Reads | None:
        """Everything the planner needs about the batch's meters, in few statements."""
        owns = self.owns
        pending_rows = [r for r in due_pending(conn, work.now - self.hold)
                        if owns is None or owns(r.gateway_id)]  # fmt: skip
        meter_ids = {r.record.meter for r in work.usage} | {r.meter_id for r in pending_rows}
        if not meter_ids:
            return None
        meters = load_meters(conn, meter_ids)
        # A record naming another shard's meter is quarantined (wrong gateway): its meter's
        # state and held records are that shard's and are not even read here.
        mine = {
            m for m in meter_ids if m in meters and (owns is None or owns(meters[m].gateway_id))
        }
        states = load_states(conn, mine, self._cache)
        held, invalid = load_pending(conn, mine)
        triaged = triage(work.usage, meters, held, invalid)
        # Posted already? Only a record at or below the meter's contiguous seq can be.
        posted: dict[str, set[int]] = {}
        for meter_id, seq in posted_keys(conn, [
            (c.record.meter, c.record.seq) for c in triaged.candidates
            if c.record.meter in states and c.record.seq <= states[c.record.meter].seq
        ]):  # fmt: skip
            posted.setdefault(meter_id, set()).add(seq)
        by_meter: dict[str, list[Rec]] = {}
        for rec in triaged.candidates:
            by_meter.setdefault(rec.record.meter, []).append(rec)
        for rec in held.values():
            by_meter.setdefault(rec.record.meter, []).append(rec)
        seen = {c.record.meter for c in triaged.candidates}
        inputs = [
            MeterInputs(meters[m], states.get(m) or MeterState(), by_meter[m],
                        posted=posted.get(m, frozenset()))
            for m in sorted(by_meter)
        ]  # fmt: skip
        # Rating's configuration, if any record is left to rate (not all already posted).
        rating = {i.meter.id for i in inputs if len(posted.get(i.meter.id, ())) < len(i.records)}
        if not rating:
            return Reads(meters, seen, triaged.decisions, inputs, Catalog())
        pricing, market, platform = pricing_inputs(conn, meters, rating, self.currency)
        tariff_ids = {m.tariff_id for m in meters.values() if m.tariff_id}
        tariffs = load_histories(conn, tariff_ids.union(*(p.tariff_ids for p in pricing.values())))
        catalog = Catalog(tariffs, provider_accounts(conn, tariffs.values()),
                          mix_windows(conn, rating), pricing, market, platform)  # fmt: skip
        return Reads(meters, seen, triaged.decisions, self._late(conn, inputs, catalog), catalog)

    def _late(
        self, conn: Connection, inputs: list[MeterInputs], catalog: Catalog
    ) -> list[MeterInputs]:
        """``inputs`` with what the database says around each late record (usually none)."""
        late = [x for i in inputs for x in late_records(i, catalog)]
        if not late:
            return inputs
        by_meter: dict[str, dict[int, Late]] = {}
        for (meter_id, seq), around in late_context(conn, late).items():
            by_meter.setdefault(meter_id, {})[seq] = around
        return [replace(i, late=by_meter[i.meter.id]) if i.meter.id in by_meter else i
                for i in inputs]  # fmt: skip

    def _gather(self, work: Work, out: Outcome, read: Reads, plans: list[MeterPlan]) -> RatedUsage:
        """The plans as rows to write; counts, quarantine rows and receipts go to ``work``."""
        versions = {t: len(h.starts) for t, h in read.catalog.tariffs.items()}
        rated = RatedUsage(meters=read.meters, seen=read.seen, rated_with=versions)
        for decision in read.triage:
            _apply(decision, work, rated)
        for plan in plans:
            for decision in plan.decisions:
                _apply(decision, work, rated)
            if plan.state is not None:
                rated.carries[plan.meter] = plan.state.dump()
                out.states[plan.meter] = plan.state
                if plan.credit is not None:
                    rated.payers[plan.meter] = plan.credit.account
                    rated.touched[plan.meter] = (plan.credit.tariff, plan.state)
                    if plan.credit.selection is not None:
                        rated.selections[plan.meter] = plan.credit.selection
        return rated

    def _commit_usage(
        self, conn: Connection, work: Work, out: Outcome, rated: RatedUsage
    ) -> dict[str, int]:
        """Write the rated usage; returns the credits left to apply last (``_run``). A tariff
        version added since the batch was rated may be in force at the end of one of its
        records: then the batch is rated again (``BatchConflictError``)."""
        if rated.postings and version_counts(conn, rated.rated_with) != rated.rated_with:
            raise BatchConflictError("a tariff version was added while the batch was rated")
        result = self._write_usage(conn, work=work, postings=rated.postings, to_hold=rated.to_hold,
                          released=rated.released, events=rated.events,
                          mismatches=rated.mismatches, carries=rated.carries)  # fmt: skip
        self._mark_online(conn, rated.meters, rated.seen, work)
        if result is not None and result.posted:
            gateways = {m: rated.meters[m].gateway_id for m, _, _ in result.posted}
            bulk_insert(conn, T_EVENTS, usage_audit_rows(work.now, result.posted,
                                                         rated.postings, gateways))  # fmt: skip
        posted = result.accounts if result is not None else {}
        if rated.touched:
            self._credit(conn, out, rated, posted=posted)
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
        if conn.dialect.name == "postgresql":  # one statement, not one per meter
            at = bind_values(conn, T_METERS.c.last_seen_at, [work.now])[0]
            conn.exec_driver_sql("UPDATE meters SET online = true, last_seen_at = %s "
                                 "WHERE id = ANY(%b)", (at, stale))  # fmt: skip
            return
        execute_many(conn, "UPDATE meters SET online = ?, last_seen_at = ? WHERE id = ?",
                     (T_METERS.c.online, T_METERS.c.last_seen_at, None),
                     [(True, work.now, m) for m in stale])  # fmt: skip

    # -- credit state -------------------------------------------------------------------------

    def _credit(
        self,
        conn: Connection,
        out: Outcome,
        rated: RatedUsage,
        *,
        posted: dict[str, AccountState],
    ) -> None:
        """Each touched meter's credit report (``hub.ingest.credit_report``). ``posted``:
        accounts as the ledger read them after posting the batch; the balances of other paying
        accounts (none usually) are read."""
        meters, payers, touched = rated.meters, rated.payers, rated.touched
        shared = {m: c for m in touched if len(c := _contributors(meters[m])) > 1}
        accounts = sorted(set(payers.values()) | {a for c in shared.values() for a in c})
        balances = {a: posted[a].balance for a in accounts if a in posted}
        unread = [a for a in accounts if a not in posted]
        balances.update(select_in(conn, T_ACCOUNTS, ("id", "balance"), "id", unread))
        customers = {cid: (flags, protected) for cid, flags, protected in select_in(
            conn, T_CUSTOMERS, ("id", "flags", "protected"), "id", accounts)}  # fmt: skip
        headroom = alternate_headroom(conn, customers)
        combined = payer_credits(conn, accounts, balances) if shared else {}
        gateways = sorted({meters[m].gateway_id for m in touched})
        keys: dict[str, str] = dict(select_in(conn, T_GATEWAYS, ("id", "command_key"), "id",
                                              gateways))  # fmt: skip
        tokens = token_setups(conn, {m: keys.get(meters[m].gateway_id, "") for m in touched})
        derives = self._derives(conn, rated, balances, exclude=set(shared))
        hasher, now = StateDigests(), datetime.now(UTC)

        def digest_of(info: CreditInfo) -> Digest:
            return self._digests.of(info, hasher)

        for meter_id, (tariff, state) in touched.items():
            paying = payers[meter_id]
            meter = meters[meter_id]
            flags, protected = customers.get(paying, (None, False))
            balance, rules = int(balances.get(paying, 0)), None
            if meter_id in shared and paying in combined:  # hub.control.combined
                credits = [combined[a] for a in shared[meter_id] if a in combined]
                balance, rules = combine(combined[paying].rules, credits)
            info = CreditInfo(
                meter_id=meter_id,
                gateway_id=meter.gateway_id,
                command_key=keys.get(meter.gateway_id, ""),
                account_id=paying,
                balance=balance,
                tariff=tariff,
                state=state,
                flags=flags,
                protected=bool(protected),
                alternate_available=headroom.get(paying, 0),
                tokens=tokens.get(meter_id),
                rules=rules,
                selection=rated.selections.get(meter_id),
            )
            out.credit[meter_id] = report(info, derives.get(meter_id), self.credit_refresh,
                                          digest_of, now)  # fmt: skip

    @staticmethod
    def _derives(
        conn: Connection, rated: RatedUsage, balances: dict[str, int], *, exclude: set[str]
    ) -> dict[str, Chain]:
        """Each touched meter's chain extended or restarted by this batch, in its transaction
        (``hub.commands.baseline``); the chains whose step held: their agents work the balance
        out alone. A meter paid by several accounts is always sent its state (no chain)."""
        mismatched = {m["meter_id"] for m in rated.mismatches}
        charges: dict[str, list[tuple[int, int]]] = {}
        for p in rated.postings:
            paying = rated.payers.get(p.meter_id)
            if paying is not None and p.meter_id not in exclude:
                debit = -sum(amount for account, amount in p.lines if account == paying)
                charges.setdefault(p.meter_id, []).append((p.seq, debit))
        steps = {
            m: ([] if m in mismatched else charges.get(m, []), state.seq,
                int(balances[rated.payers[m]]))
            for m, (_, state) in rated.touched.items()
            if m not in exclude and rated.payers[m] in balances
        }  # fmt: skip
        return baseline.after_batches(conn, steps)


def _contributors(meter: MeterCfg) -> list[str]:
    """The accounts paying a positive share of ``meter`` now (none if they cannot be told)."""
    try:
        return contributors(payer_weights(meter.customer_id, tuple(meter.sharers),
                                          meter.split_rule))  # fmt: skip
    except SplitRuleError:
        return []


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
    payers: dict[str, str] = field(default_factory=dict)  # meter -> paying account
    touched: dict[str, tuple[Tariff, MeterState]] = field(default_factory=dict)
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)  # meter -> choice now
    rated_with: dict[str, int] = field(default_factory=dict)  # tariff -> versions read


@dataclass(frozen=True)
class Reads:
    """What the read phase found for the planner: the batch's meters, those that sent records
    (``seen``), the batch's triage, each meter's inputs and rating's configuration."""

    meters: dict[str, MeterCfg]
    seen: set[str]
    triage: tuple[Decision, ...]
    inputs: list[MeterInputs]
    catalog: Catalog


def _apply(d: Decision, work: Work, rated: RatedUsage) -> None:
    """One decision of the plan gathered into what the batch writes."""
    match d:
        case Post():
            rated.postings.append(d.posting)
            work.settled.record(d.rec.gateway, d.rec.record)
            if d.late:
                work.counts["late"] += 1
        case Release():
            rated.released.append((d.meter, d.seq))
            if d.posted:
                work.counts["released"] += 1
        case Hold():
            if not d.rec.pending:
                rated.to_hold.append(d.rec)
                work.counts["held"] += 1
        case Duplicate():
            work.counts["duplicates"] += 1
            if d.posted:  # its receipt may have been lost
                work.settled.record(d.rec.gateway, d.rec.record)
        case Quarantine() | Tamper():
            if isinstance(d, Quarantine) and d.error is not None:
                log.warning("meter %s seq %d not rated: %s", d.rec.record.meter,
                            d.rec.record.seq, d.error)  # fmt: skip
            work.quarantine_payload(usage_topic(d.rec), record_json(d.rec.record), d.reason)
            work.settled.record(d.rec.gateway, d.rec.record)
            if isinstance(d, Tamper):
                data = {"rule": d.rule, "seq": d.rec.record.seq}
                rated.events.append(event_row(work.now, "tamper", d.rec.record.meter, d.reason,
                                              data))  # fmt: skip
        case Gap():
            work.counts["gaps_skipped"] += 1
            why = f"records {d.first}..{d.last} never arrived in time"
            rated.events.append(event_row(work.now, "seq_gap", d.meter, why, {"seq": d.seq}))
        case Reset():
            why = (f"register went back from {d.claim.old_wh} to {d.claim.new_wh} Wh; segment "
                   f"{d.segment} starts at seq {d.seq}")  # fmt: skip
            rated.events.append(event_row(work.now, "register_reset", d.meter, why,
                                          {"seq": d.seq, "segment": d.segment}))  # fmt: skip
        case Mismatch():
            work.counts["mismatches"] += 1
            rated.mismatches.append({"meter_id": d.meter, "seq": d.seq, "at": work.now,
                                     "hub_shares": d.hub_shares,
                                     "agent_shares": d.agent_shares})  # fmt: skip
        case Invalid():
            bad = d.held
            why = f"held record of meter {bad.meter_id!r} seq {bad.seq} is invalid: {bad.reason}"
            work.quarantine_payload(topics.topic(bad.gateway_id, "usage"), bad.text, why)
            rated.released.append((bad.meter_id, bad.seq))


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


def _unreachable(exc: DBAPIError) -> bool:
    """The database cannot be reached (rather than refusing this batch)."""
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        return any(s in text for s in ("connect", "connection", "server closed", "unable to open",
                                       "disk i/o", "terminating"))  # fmt: skip
    return False
