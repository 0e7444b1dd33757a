"""The durable command table's queries: every command a meter is sent lives here first.

A decision to command a meter (credit control, an operator, a tariff update, a credit state)
writes its signed command with :func:`enqueue` in the transaction that made the decision. The
dispatcher (``hub.commands.dispatcher``) publishes from the table; the broker's PUBACK makes it
``sent`` (:func:`mark_sent`), the agent's ``command_ack`` / ``command_rejected`` make it
``applied`` / ``rejected`` (:func:`settle`, called by ingest in the batch that stores the
event). Until then it is published again: at once when its gateway says it is online
(:func:`wake_gateway`), and periodically with back-off (``next_try_at``). Its expiry ends it
``expired`` (:func:`expire`). A newer command of the same group for the same meter supersedes an
older open one, so a stale disconnect is never sent after a reconnect (the agent also refuses a
command older than the newest it applied in that group).

Every command is published bound to its gateway's current store epoch (``gateways.epoch``,
``hub.ingest.restarts``): :func:`due` sets the command's ``epoch`` and signs it again when the
stored one names none or another. The agent refuses a command bound to an epoch not its own, so
a command captured before a gateway's store was lost stays refused after it, while the hub's
own open commands reach the new store.

Each credit command queued blesses or restarts its meter's chain (``hub.commands.baseline``:
what the agent works its balance out from), before any command row is locked; one that expires
or is rejected drops the chain it blessed.

The functions take the caller's connection and never commit: the caller owns the transaction.

On PostgreSQL several writers change command rows at once (the ingest coordinator superseding,
the dispatcher marking sent, the expiry job, each hub process of a group). An ``UPDATE`` locks
its rows in whatever order its plan visits them, so two of them over the same rows can wait on
each other (measured: a deadlock between superseding and ``mark_sent`` in ``bench.fleet``).
So a statement that changes several rows first locks them in id order (one ``SELECT ... ORDER
BY id FOR UPDATE``, or :func:`_locked` for ids gathered otherwise), and ``due`` skips rows others
hold: no two writers wait on each other in a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import case, func, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from hub.commands import baseline
from hub.models import Command, CommandStatus, Gateway, table
from hub.models.commands import OPEN, OPEN_SQL
from protocol.messages import COMMAND_GROUPS
from protocol.signing import signed, verify
from protocol.topics import topic

T_COMMANDS = table(Command)
T_GATEWAYS = table(Gateway)
RETRY_FIRST = timedelta(seconds=30)
RETRY_MAX = timedelta(minutes=10)
CHUNK = 500  # ids per IN (...) list


@dataclass(frozen=True)
class Due:
    """A command to publish now."""

    id: str
    topic: str
    payload: bytes


def group_of(action: str) -> str:
    return COMMAND_GROUPS.get(action, action)


def enqueue(
    conn: Connection, gateway: str, command: Mapping[str, Any], now: datetime | None = None
) -> str:
    """Store the signed ``command`` (a dict) for ``gateway``, superseding the meter's older open
    commands of the same group; returns its id."""
    enqueue_many(conn, [(gateway, command)], now)
    return str(command["id"])


def enqueue_many(
    conn: Connection,
    commands: Sequence[tuple[str, Mapping[str, Any]]],
    now: datetime | None = None,
) -> None:
    """:func:`enqueue` for many (gateway, command) pairs at once, at most one per meter and
    group (the ingest coordinator queues hundreds of credit states a second)."""
    if not commands:
        return
    moment = now or datetime.now(UTC)
    baseline.record(conn, [command for _, command in commands], moment)  # before command rows
    by_group: dict[str, list[str]] = {}
    rows = []
    for gateway, command in commands:
        grp = group_of(str(command["action"]))
        by_group.setdefault(grp, []).append(str(command["meter"]))
        rows.append({
            "id": command["id"], "meter_id": command["meter"], "gateway_id": gateway,
            "action": command["action"], "grp": grp,
            "payload": json.dumps(command, separators=(",", ":")),
            "status": CommandStatus.QUEUED, "detail": "", "attempts": 0, "created_at": moment,
            "expires_at": datetime.fromisoformat(command["expires_at"]), "next_try_at": moment,
        })  # fmt: skip
    older: list[str] = []
    for grp, meters in by_group.items():
        for i in range(0, len(meters), CHUNK):
            older += conn.execute(
                select(T_COMMANDS.c.id)
                .where(T_COMMANDS.c.meter_id.in_(meters[i : i + CHUNK]),
                       T_COMMANDS.c.grp == grp, T_COMMANDS.c.status.in_(OPEN))
            ).scalars()  # fmt: skip
    older = _locked(conn, older, T_COMMANDS.c.status.in_(OPEN))
    _update_ids(conn, older, status=CommandStatus.SUPERSEDED, done_at=moment,
                detail="superseded by a newer command")  # fmt: skip
    conn.execute(insert(T_COMMANDS), rows)


def _locked(conn: Connection, ids: Iterable[str], *where: ColumnElement[bool]) -> list[str]:
    """Those of the rows ``ids`` that still match ``where``, locked in id order (PostgreSQL;
    SQLite has one writer at a time and ignores the lock)."""
    wanted, out = sorted(set(ids)), list[str]()
    for i in range(0, len(wanted), CHUNK):
        out += conn.execute(
            select(T_COMMANDS.c.id).where(T_COMMANDS.c.id.in_(wanted[i : i + CHUNK]), *where)
            .order_by(T_COMMANDS.c.id).with_for_update()
        ).scalars()  # fmt: skip
    return out


def lock_commands(conn: Connection, ids: Iterable[object]) -> None:
    """Lock the command rows ``ids`` (those that are strings) in id order, before a transaction
    settles several of them one by one in another order."""
    _locked(conn, (i for i in ids if isinstance(i, str)))


def _update_ids(conn: Connection, ids: Sequence[str], **values: Any) -> None:
    """Set ``values`` on the rows ``ids`` (already locked by :func:`_locked`)."""
    for i in range(0, len(ids), CHUNK):
        conn.execute(update(T_COMMANDS).where(T_COMMANDS.c.id.in_(ids[i : i + CHUNK]))
                     .values(**values))  # fmt: skip


def due(conn: Connection, now: datetime, limit: int = 500) -> list[Due]:
    """Open, unexpired commands whose next try has come, credit states first (a draw must reach
    the agent before it would cut on its own), then oldest first; each is given its next try
    time (back-off doubling from ``RETRY_FIRST`` to ``RETRY_MAX``). On PostgreSQL the rows are
    locked, and rows another hub process's dispatcher holds are skipped (``SKIP LOCKED``), so
    each try of a command is published by one process."""
    rows = conn.execute(
        select(T_COMMANDS.c.id, T_COMMANDS.c.gateway_id, T_COMMANDS.c.payload,
               T_COMMANDS.c.attempts, T_GATEWAYS.c.epoch, T_GATEWAYS.c.command_key)
        .outerjoin(T_GATEWAYS, T_GATEWAYS.c.id == T_COMMANDS.c.gateway_id)
        .where(T_COMMANDS.c.status.in_(OPEN), T_COMMANDS.c.next_try_at <= now,
               T_COMMANDS.c.expires_at > now)
        .order_by(case((T_COMMANDS.c.grp == "credit", 0), else_=1), T_COMMANDS.c.created_at,
                  T_COMMANDS.c.id).limit(limit)
        .with_for_update(of=T_COMMANDS, skip_locked=True)
    ).all()  # fmt: skip
    by_attempts: dict[int, list[str]] = {}
    for row in rows:
        by_attempts.setdefault(min(int(row.attempts), 8), []).append(row.id)
    for attempts, ids in by_attempts.items():
        delay = min(RETRY_FIRST * 2**attempts, RETRY_MAX)
        for i in range(0, len(ids), CHUNK):
            conn.execute(
                update(T_COMMANDS).where(T_COMMANDS.c.id.in_(ids[i : i + CHUNK]))
                .values(attempts=T_COMMANDS.c.attempts + 1, next_try_at=now + delay)
            )  # fmt: skip
    return [
        Due(row.id, topic(row.gateway_id, "cmd"), bound(row.payload, row.epoch, row.command_key))
        for row in rows
    ]


def bound(payload: str, epoch: str | None, key: str | None) -> bytes:
    """The stored command ``payload`` bound to the gateway's store ``epoch`` and signed with
    the gateway's current ``key`` (signed again when it names another epoch, or was signed
    before the gateway's key was rotated); as stored while the hub has not heard the gateway's
    epoch and its signature holds."""
    if not key:
        return payload.encode()
    command = json.loads(payload)
    fresh = verify(command, key)
    if fresh and (epoch is None or command.get("epoch") == epoch):
        return payload.encode()
    if epoch is not None:
        command["epoch"] = epoch
    return json.dumps(signed(command, key), separators=(",", ":")).encode()


# The earliest next try and the earliest expiry of the open commands, each read from its partial
# index of open commands (migration 0920) as its first entry. Asked as "is any open command due
# (LIMIT 1)?", the planner used statistics gathered while most commands were open (just after
# every meter was sent a state) and scanned the whole table for a row it expected at once: 6 to
# 11 ms a call with 30,000 commands, every dispatcher round, until the next ANALYZE.
_OPEN = text(f"commands.{OPEN_SQL}")
_NEXT_TIMES = select(
    select(func.min(T_COMMANDS.c.next_try_at)).where(_OPEN).scalar_subquery(),
    select(func.min(T_COMMANDS.c.expires_at)).where(_OPEN).scalar_subquery(),
)


def has_work(conn: Connection, now: datetime) -> bool:
    """Whether an open command is due or past its expiry (an idle dispatcher round skips its
    write transaction otherwise)."""
    return any(t is not None and t <= now for t in conn.execute(_NEXT_TIMES).one())


def mark_sent(conn: Connection, ids: Iterable[str], now: datetime) -> None:
    """The broker acknowledged these: ``queued`` → ``sent`` (a later state stays)."""
    queued = _locked(conn, ids, T_COMMANDS.c.status == CommandStatus.QUEUED)
    _update_ids(conn, queued, status=CommandStatus.SENT, sent_at=now)


def settle(
    conn: Connection, gateway: str, command_id: str, *, applied: bool, detail: str, now: datetime
) -> bool:
    """The agent of ``gateway`` applied (or refused) its command ``command_id``: the agent's word
    ends it, unless it is not that gateway's command or already applied/rejected. An expired
    command can still turn ``applied`` (the gateway applied it before its own clock said it
    expired) but not ``rejected``. True when a row changed."""
    allowed = [*OPEN, CommandStatus.SUPERSEDED] + ([CommandStatus.EXPIRED] if applied else [])
    status = CommandStatus.APPLIED if applied else CommandStatus.REJECTED
    result = conn.execute(
        update(T_COMMANDS)
        .where(T_COMMANDS.c.id == command_id, T_COMMANDS.c.gateway_id == gateway,
               T_COMMANDS.c.status.in_(allowed))
        .values(status=status, detail=detail[:500], done_at=now)
    )  # fmt: skip
    if applied and result.rowcount:
        adopt_rotation(conn, gateway, command_id)
    elif result.rowcount:
        baseline.forget(conn, [command_id])
    return bool(result.rowcount)


def adopt_rotation(conn: Connection, gateway: str, command_id: str) -> None:
    """When ``command_id`` is a ``rotate`` the gateway applied: from now the hub signs with the
    key it carried (the gateway's ``next_command_key``) and the broker's password file gets the
    new MQTT password's hash (``next_mqtt_password_hash``); before, the old ones stay."""
    row = conn.execute(
        select(T_COMMANDS.c.action, T_COMMANDS.c.payload).where(T_COMMANDS.c.id == command_id)
    ).first()
    if row is None or row.action != "rotate":
        return
    key = json.loads(row.payload).get("params", {}).get("command_key")
    conn.execute(
        update(T_GATEWAYS)
        .where(T_GATEWAYS.c.id == gateway, T_GATEWAYS.c.next_command_key == key)
        .values(command_key=T_GATEWAYS.c.next_command_key,
                mqtt_password_hash=func.coalesce(T_GATEWAYS.c.next_mqtt_password_hash,
                                                 T_GATEWAYS.c.mqtt_password_hash),
                next_command_key=None, next_mqtt_password_hash=None)
    )  # fmt: skip


def wake_gateway(conn: Connection, gateway: str, now: datetime) -> None:
    """``gateway`` came online: its open commands are due again now."""
    ids = conn.execute(
        select(T_COMMANDS.c.id)
        .where(T_COMMANDS.c.gateway_id == gateway, T_COMMANDS.c.status.in_(OPEN))
        .order_by(T_COMMANDS.c.id).with_for_update()
    ).scalars().all()  # fmt: skip
    _update_ids(conn, ids, next_try_at=now)


def expire(conn: Connection, now: datetime) -> list[dict[str, Any]]:
    """End every open command whose expiry has passed; the rows ended (id, meter, action)."""
    expiring = conn.execute(
        select(T_COMMANDS.c.id)
        .where(T_COMMANDS.c.status.in_(OPEN), T_COMMANDS.c.expires_at <= now,
               T_COMMANDS.c.action == "credit")
    ).scalars()  # fmt: skip
    baseline.forget(conn, expiring)  # before the command rows (lock order: hub.commands.baseline)
    rows = conn.execute(
        select(T_COMMANDS.c.id, T_COMMANDS.c.meter_id, T_COMMANDS.c.gateway_id,
               T_COMMANDS.c.action, T_COMMANDS.c.status, T_COMMANDS.c.expires_at)
        .where(T_COMMANDS.c.status.in_(OPEN), T_COMMANDS.c.expires_at <= now)
        .order_by(T_COMMANDS.c.id).with_for_update()  # locked in id order, rechecked once locked
    ).all()  # fmt: skip
    _update_ids(conn, [r.id for r in rows], status=CommandStatus.EXPIRED, done_at=now,
                detail="expired before applied")  # fmt: skip
    return [dict(r._mapping) for r in rows]


def history(conn: Connection, meter_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The meter's commands, newest first."""
    rows = conn.execute(
        select(T_COMMANDS.c.id, T_COMMANDS.c.action, T_COMMANDS.c.status, T_COMMANDS.c.detail,
               T_COMMANDS.c.attempts, T_COMMANDS.c.created_at, T_COMMANDS.c.sent_at,
               T_COMMANDS.c.done_at, T_COMMANDS.c.expires_at, T_COMMANDS.c.payload)
        .where(T_COMMANDS.c.meter_id == meter_id)
        .order_by(T_COMMANDS.c.created_at.desc(), T_COMMANDS.c.id.desc()).limit(limit)
    ).all()  # fmt: skip
    return [dict(r._mapping) for r in rows]


def unapplied(conn: Connection, meter_ids: Iterable[str], grp: str = "relay") -> dict[str, str]:
    """Per meter, the status of its newest command of group ``grp`` (relay: disconnect and
    reconnect) when that is not ``applied``: what an operator should see on the meter."""
    ids = sorted(set(meter_ids))
    if not ids:
        return {}
    rows = conn.execute(
        select(T_COMMANDS.c.meter_id, T_COMMANDS.c.status)
        .where(T_COMMANDS.c.meter_id.in_(ids), T_COMMANDS.c.grp == grp)
        .order_by(T_COMMANDS.c.meter_id, T_COMMANDS.c.created_at.desc(), T_COMMANDS.c.id.desc())
    ).all()  # fmt: skip
    newest: dict[str, str] = {}
    for row in rows:
        newest.setdefault(row.meter_id, str(row.status))
    return {m: s for m, s in newest.items() if s != CommandStatus.APPLIED}


def prune(conn: Connection, before: datetime) -> int:
    """Delete ended credit-state commands older than ``before`` (a meter gets one every few
    seconds while it consumes; relay and prompt commands are kept for the audit trail)."""
    result = conn.execute(
        T_COMMANDS.delete().where(
            T_COMMANDS.c.grp == "credit",
            T_COMMANDS.c.status.not_in(OPEN),
            T_COMMANDS.c.created_at < before,
        )
    )
    return int(result.rowcount or 0)
