"""Fleet-wide reads for the operator dashboard: meter counts, a searchable page of meters,
disconnections and top-ups per day, and one meter's daily consumption.

Read-only queries, each one statement (the dashboard at 10,000 meters and more must not read
every meter to show fifty): counts are aggregated by the database, days are grouped by the
database (``date()`` on both SQLite and PostgreSQL, in UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.engine import Connection

from hub.models import Account, Event, JournalEntry, JournalLine, Meter, PostedUsage, table
from hub.models.types import AccountKind, EntryKind, Relay

T_METERS = table(Meter)
T_ENTRIES = table(JournalEntry)
T_LINES = table(JournalLine)
T_ACCOUNTS = table(Account)
M = T_METERS.c
EV = table(Event).c
JE, JL, AC = T_ENTRIES.c, T_LINES.c, T_ACCOUNTS.c
PU = table(PostedUsage).c


@dataclass(frozen=True)
class Summary:
    meters: int
    online: int
    off: int


@dataclass(frozen=True)
class Day:
    """One UTC day of the fleet: disconnections recorded, top-ups and their total (minor)."""

    day: date
    disconnects: int = 0
    topups: int = 0
    topup_minor: int = 0


def summary(conn: Connection) -> Summary:
    """How many meters, how many online, how many with supply off."""
    row = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((M.online.is_(True), 1), else_=0)), 0),
            func.coalesce(func.sum(case((M.relay == Relay.OFF.value, 1), else_=0)), 0),
        ).select_from(T_METERS)
    ).one()
    return Summary(int(row[0]), int(row[1]), int(row[2]))


def matching(q: str | None, gateway: str | None) -> list[ColumnElement[bool]]:
    """Conditions on ``meters``: on ``gateway``, and whose id, customer or gateway contains
    ``q`` (any case)."""
    out: list[ColumnElement[bool]] = []
    if gateway:
        out.append(M.gateway_id == gateway)
    if q:
        pattern = f"%{_escape_like(q.lower())}%"
        columns = (M.id, M.customer_id, M.gateway_id)
        out.append(or_(*(func.lower(c).like(pattern, escape="\\") for c in columns)))
    return out


def count_meters(conn: Connection, q: str | None, gateway: str | None) -> int:
    stmt = select(func.count()).select_from(T_METERS).where(*matching(q, gateway))
    return int(conn.execute(stmt).scalar_one())


def daily(conn: Connection, since: date, until: date) -> list[Day]:
    """Every UTC day from ``since`` to ``until`` inclusive, with its disconnections (events of
    kind ``disconnect``) and top-ups (count, and what they brought in: the clearing side)."""
    start, end = _bounds(since, until)
    cuts = conn.execute(
        select(func.date(EV.at), func.count())
        .where(EV.kind == "disconnect", EV.at >= start, EV.at < end)
        .group_by(func.date(EV.at))
    ).all()
    tops = conn.execute(
        select(func.date(JE.effective_at), func.count(func.distinct(JE.id)), -func.sum(JL.amount))
        .select_from(T_ENTRIES.join(T_LINES, JL.entry_id == JE.id)
                     .join(T_ACCOUNTS, AC.id == JL.account_id))
        .where(and_(JE.kind == EntryKind.TOPUP.value, AC.kind == AccountKind.CLEARING.value,
                    JE.effective_at >= start, JE.effective_at < end))
        .group_by(func.date(JE.effective_at))
    ).all()  # fmt: skip
    cut = {_day(day): int(n) for day, n in cuts}
    topped = {_day(day): (int(n), int(total or 0)) for day, n, total in tops}
    return [Day(d, cut.get(d, 0), *topped.get(d, (0, 0))) for d in _days(since, until)]


def consumption(
    conn: Connection, meter_id: str, since: date, until: date
) -> list[tuple[date, int]]:
    """The meter's settled energy per UTC day (base units: Wh, litres for water), every day
    from ``since`` to ``until``, by the day its interval ended."""
    start, end = _bounds(since, until)
    rows = conn.execute(
        select(func.date(PU.interval_end), func.sum(PU.import_end - PU.import_start))
        .where(PU.meter_id == meter_id, PU.interval_end >= start, PU.interval_end < end)
        .group_by(func.date(PU.interval_end))
    ).all()
    found = {_day(d): int(v or 0) for d, v in rows}
    return [(d, found.get(d, 0)) for d in _days(since, until)]


def _bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """The instants (naive UTC, as stored) from the start of ``since`` to the end of ``until``."""
    start = datetime.combine(since, datetime.min.time())
    return start, datetime.combine(until + timedelta(days=1), datetime.min.time())


def _days(since: date, until: date) -> list[date]:
    return [since + timedelta(days=i) for i in range((until - since).days + 1)]


def _day(value: object) -> date:
    """A ``date()`` result: a date (PostgreSQL) or ``YYYY-MM-DD`` text (SQLite)."""
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
