"""A gateway whose store was lost: told apart by its epoch, and told where to resume.

Every gateway store has an ``epoch`` (random hex made with the agent's SQLite file): its online
status and every usage record carry it. A store that is lost and made anew numbers its records
from seq 1 again under a new epoch; by seq alone the hub would drop them as duplicates of the
records it posted before, and their energy would never be billed (issue 14).

So, per batch (``screen``, in the batch's read transaction, before any record is rated):

* the epochs each gateway is heard with are compared with those the hub has stored
  (``gateways.epoch``, the current one, and ``gateway_epochs``, every one it has had). The first
  epoch heard from a gateway is adopted. An epoch never seen before from a gateway that had one
  is a **restart**: the store started over; so is an online status announcing an epoch the
  gateway had before but not now (a store restored from a backup).
* For a restart the hub takes, per meter of the gateway that it holds records of, the highest
  seq it holds (posted, held, or in this batch, in any epoch): the **resume point**. Records of
  the new epoch at or below it were numbered before the gateway knew where to resume. They
  are taken out of the batch: neither posted nor dropped as duplicates, and not in the
  gateway's receipt, so the gateway keeps them and sends them again, renumbered.
* Records of an epoch that is no longer the gateway's (one of the old store arriving late,
  after the batch that saw the restart) are taken out too: the energy they carried is in the
  bridge the gateway makes from the resume point (below), and posting them now would overlap it.

Then (``write``, in the batch's write transaction, after its usage is written) the hub stores
the new epoch and the resume points, records a ``gateway_restarted`` event, and queues for each
of those meters a signed ``resume`` command (``protocol.messages.ResumePoint``: the seq, and
where the newest posted record ended, register and time) and its credit state. The agent
renumbers the meter's unconfirmed records above the seq, in one transaction, with a record
bridging the energy used between the hub's newest record and its own first one
(``agent/resume.py``); the records then follow the posted ones and the register rule
(``hub.rating.register``) takes them like any other. Commands are published bound to the
gateway's current epoch (``hub.commands.store.due``), so one captured before the store was lost
is refused by the agent after it.

Each gateway is settled by one processor, which keeps what it read and wrote here (``known``);
a failed batch empties it (``forget``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from hub.commands.store import enqueue
from hub.control.commands import build_command
from hub.control.credit_state import credit_command_for, credit_state
from hub.ingest.model import T_CARRY, T_EVENTS, T_GATEWAYS, T_METERS, T_PENDING, Work, event_row
from hub.models import GatewayEpoch, table
from hub.rating.state import MeterState
from protocol.messages import ResumePoint

log = logging.getLogger(__name__)

T_EPOCHS = table(GatewayEpoch)


@dataclass
class Known:
    """What the hub knows of one gateway's epochs: the current one, and every epoch it has had
    with its resume points (meter -> seq; empty for a store that did not start over)."""

    current: str | None = None
    resume: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Restart:
    gateway: str
    epoch: str
    previous: str | None
    points: dict[str, int]  # meter -> highest seq held from before (read before this batch)


@dataclass
class Screened:
    """What ``screen`` found in one batch, for ``write`` and, once committed, ``committed``."""

    adopted: dict[str, str] = field(default_factory=dict)  # gateway -> its first epoch
    restarts: list[Restart] = field(default_factory=list)
    known: dict[str, Known] = field(default_factory=dict)  # as it will be after the commit
    allowed: dict[str, set[str | None]] = field(default_factory=dict)  # epochs settled now


class Restarts:
    """Epoch detection and resume for the gateways one processor settles."""

    def __init__(self, owns: Callable[[str], bool] | None = None) -> None:
        self.owns = owns
        self._known: dict[str, Known] = {}

    def forget(self) -> None:
        self._known.clear()

    def committed(self, screened: Screened) -> None:
        self._known.update(screened.known)

    def screen(self, conn: Connection, work: Work) -> Screened:
        """Find new epochs in ``work`` and take out of it the records awaiting a resume."""
        screened = Screened()
        heard = _heard(work)
        for gateway in sorted(heard):
            if self.owns is not None and not self.owns(gateway):
                continue
            stored = self._known.get(gateway) or _load(conn, gateway)
            if stored is None:  # no such gateway (its meters' records are quarantined)
                continue
            new = [e for e in heard[gateway] if e != stored.current and e not in stored.resume]
            announced = _announced(work, gateway)
            epoch = new[-1] if new else None
            if epoch is None and announced is not None and announced != stored.current:
                epoch = announced  # a store restored from a backup: an epoch it had before
            known = stored
            if epoch is not None:
                known = Known(epoch, dict(stored.resume))
                if stored.current is None and not stored.resume:
                    screened.adopted[gateway] = epoch
                    known.resume[epoch] = {}
                else:
                    points = _resume_points(conn, gateway, epoch, work)
                    known.resume[epoch] = points
                    screened.restarts.append(Restart(gateway, epoch, stored.current, points))
            screened.known[gateway] = known
            screened.allowed[gateway] = {stored.current, known.current}
        # only gateways heard with an epoch not settled now, or one with resume points, have
        # records to take out (nearly every batch has none)
        suspect = {gw for gw, known in screened.known.items()
                   if any(e not in screened.allowed[gw] or known.resume.get(e)
                          for e in heard[gw])}  # fmt: skip
        if suspect:
            _take_out_awaiting(work, screened, suspect)
        return screened

    def write(self, conn: Connection, screened: Screened, now: datetime) -> None:
        """Store new epochs and resume points; queue the resume commands and credit states."""
        for gateway, epoch in sorted(screened.adopted.items()):
            _store_epoch(conn, gateway, epoch, {}, now)
        for restart in screened.restarts:
            points = _restart(conn, restart, now)
            screened.known[restart.gateway].resume[restart.epoch] = points


def _heard(work: Work) -> dict[str, list[str]]:
    """Per gateway, the epochs its records and online status carry, in the order heard (the
    status last: it is the newest word from the gateway's store)."""
    heard: dict[str, list[str]] = {}
    for rec in work.usage:
        epoch = rec.record.epoch
        if epoch is not None:
            seen = heard.setdefault(rec.gateway, [])
            if not seen or seen[-1] != epoch:
                seen.append(epoch)
    for gateway, status in work.statuses.items():
        if status.state == "online" and status.epoch is not None:
            heard.setdefault(gateway, []).append(status.epoch)
    return heard


def _load(conn: Connection, gateway: str) -> Known | None:
    found = conn.execute(select(T_GATEWAYS.c.epoch).where(T_GATEWAYS.c.id == gateway)).first()
    if found is None:
        return None
    current = found.epoch
    rows = conn.execute(
        select(T_EPOCHS.c.epoch, T_EPOCHS.c.resume).where(T_EPOCHS.c.gateway_id == gateway)
    ).all()
    resume = {str(r.epoch): {str(m): int(s) for m, s in (r.resume or {}).items()} for r in rows}
    return Known(current, resume)


def _resume_points(conn: Connection, gateway: str, epoch: str, work: Work) -> dict[str, int]:
    """Per meter of ``gateway`` the hub holds records of: the highest seq held (posted, held,
    or in this batch), at least every seq of the new ``epoch`` heard so far."""
    meters = list(
        conn.execute(select(T_METERS.c.id).where(T_METERS.c.gateway_id == gateway)).scalars()
    )
    if not meters:
        return {}
    held: dict[str, int] = {}
    for meter_id, text in conn.execute(
        select(T_CARRY.c.meter_id, T_CARRY.c.state).where(T_CARRY.c.meter_id.in_(meters))
    ):
        newest = MeterState.load(text).newest
        if newest:
            held[meter_id] = newest
    for meter_id, top in conn.execute(
        select(T_PENDING.c.meter_id, func.max(T_PENDING.c.seq))
        .where(T_PENDING.c.meter_id.in_(meters))
        .group_by(T_PENDING.c.meter_id)
    ):
        held[meter_id] = max(held.get(meter_id, 0), int(top))
    mine = set(meters)
    for rec in work.usage:
        r = rec.record
        if rec.gateway == gateway and r.meter in mine and r.epoch != epoch:
            held[r.meter] = max(held.get(r.meter, 0), r.seq)
    for rec in work.usage:
        r = rec.record
        if rec.gateway == gateway and r.epoch == epoch and r.meter in held:
            held[r.meter] = max(held[r.meter], r.seq)
    return held


def _announced(work: Work, gateway: str) -> str | None:
    """The epoch the gateway's online status in this batch announces, if any."""
    status = work.statuses.get(gateway)
    return status.epoch if status is not None and status.state == "online" else None


def _take_out_awaiting(work: Work, screened: Screened, gateways: set[str]) -> None:
    """Take out of ``work`` the records of ``gateways`` of a store that is no longer the
    gateway's (a late one of the store before a restart: its energy is in the resume point's
    bridge), and those numbered before their store learnt where to resume."""
    kept = []
    for rec in work.usage:
        r = rec.record
        known = screened.known.get(rec.gateway) if rec.gateway in gateways else None
        if known is None or r.epoch is None:
            kept.append(rec)
        elif r.epoch not in screened.allowed[rec.gateway]:
            work.counts["stale_epoch"] += 1
        elif r.seq <= known.resume.get(r.epoch, {}).get(r.meter, 0):
            work.counts["awaiting_resume"] += 1
        else:
            kept.append(rec)
    work.usage = kept


def _store_epoch(
    conn: Connection, gateway: str, epoch: str, resume: dict[str, int], now: datetime
) -> None:
    conn.execute(update(T_GATEWAYS).where(T_GATEWAYS.c.id == gateway).values(epoch=epoch))
    conn.execute(  # a restored store's epoch again: its resume points are new
        delete(T_EPOCHS).where(T_EPOCHS.c.gateway_id == gateway, T_EPOCHS.c.epoch == epoch)
    )
    conn.execute(
        insert(T_EPOCHS).values(gateway_id=gateway, epoch=epoch, seen_at=now, resume=resume)
    )


def _restart(conn: Connection, restart: Restart, now: datetime) -> dict[str, int]:
    """Store the restart, record its event, queue its commands; the resume points stored."""
    gateway = restart.gateway
    key = conn.execute(
        select(T_GATEWAYS.c.command_key).where(T_GATEWAYS.c.id == gateway)
    ).scalar_one_or_none()
    points = dict(restart.points)
    resume: dict[str, ResumePoint] = {}
    states: dict[str, str] = {
        str(m): str(text)
        for m, text in conn.execute(
            select(T_CARRY.c.meter_id, T_CARRY.c.state).where(T_CARRY.c.meter_id.in_(points))
        )
    }
    for meter_id in sorted(points):
        state = MeterState.load(states.get(meter_id))
        seq = max(points[meter_id], state.newest)  # this batch may have posted more
        points[meter_id] = seq
        # where the newest posted record ended, when nothing the hub holds comes after it
        ends = state.newest == seq and state.register is not None
        resume[meter_id] = ResumePoint(
            seq=seq,
            import_end=state.register if ends else None,
            end=state.until if ends else None,
        )
    _store_epoch(conn, gateway, restart.epoch, points, now)
    why = (
        f"gateway {gateway} started over with a new store (epoch {restart.epoch}, was "
        f"{restart.previous}); {len(points)} meter(s) resume above the seqs the hub holds"
    )
    log.warning("%s", why)
    data: dict[str, Any] = {"gateway": gateway, "epoch": restart.epoch,
                            "previous": restart.previous, "resume": points}  # fmt: skip
    conn.execute(insert(T_EVENTS), [event_row(now, "gateway_restarted", None, why, data)])
    if not key:
        return points
    for meter_id, point in sorted(resume.items()):
        params = point.model_dump(mode="json", exclude_none=True)
        command = build_command(key, meter_id, "resume", params=params, now=now,
                                reason="the gateway's store started over")  # fmt: skip
        enqueue(conn, gateway, command, now)
        try:
            credit = credit_state(conn, meter_id, now)
        except LookupError as exc:
            log.warning("no credit state for %s after its gateway restarted: %s", meter_id, exc)
            continue
        enqueue(conn, gateway, credit_command_for(credit, reason="gateway restarted"), now)
    return points
