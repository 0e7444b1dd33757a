"""Print sites and paper routes in the database (I/O around ``routing``): ``POST /print-sites``,
routing a billing run's paper bills in the run's transaction, and each bill's route as its
``delivery`` entry. Routes are written once per bill and never changed."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.engine import Connection

from hub.billing.routing import Route, Score, Site, Zone, normalize, route_all
from hub.errors import ConflictError, NotFoundError
from hub.ledger.bulk import CHUNK
from hub.models import Bill, Event, PaperRoute, PrintSite, PrintZone, ProfileField, table
from protocol.money import to_major

UNROUTABLE = "paper_unroutable"
PAPER = ("paper", "both")  # the profile deliveries that mail a paper bill
_sites = table(PrintSite)
_zones = table(PrintZone)
_routes = table(PaperRoute)
_bills = table(Bill)
_events = table(Event)
_fields = table(ProfileField)


@dataclass(frozen=True)
class NewSite:
    id: str
    name: str
    per_piece: int
    currency: str
    daily_capacity: int
    zones: tuple[Zone, ...]


def create_site(conn: Connection, site: NewSite, now: datetime) -> None:
    """Insert a site and its zones; ConflictError if the id is taken."""
    if conn.execute(select(_sites.c.id).where(_sites.c.id == site.id)).first() is not None:
        raise ConflictError(f"print site {site.id!r} already exists")
    values = {"id": site.id, "name": site.name, "per_piece": site.per_piece,
              "currency": site.currency, "daily_capacity": site.daily_capacity,
              "created_at": now}  # fmt: skip
    conn.execute(insert(_sites).values(values))
    conn.execute(insert(_zones), [{"site_id": site.id, "prefix": z.prefix,
                                   "transport": z.transport, "co2_g": z.co2_g}
                                  for z in site.zones])  # fmt: skip


def site_document(conn: Connection, site_id: str) -> dict[str, Any]:
    """The site as the API shows it; NotFoundError for an unknown id."""
    row = conn.execute(select(_sites).where(_sites.c.id == site_id)).first()
    if row is None:
        raise NotFoundError("print site", site_id)
    zones = conn.execute(select(_zones).where(_zones.c.site_id == site_id)
                         .order_by(_zones.c.prefix))  # fmt: skip
    cur = row.currency
    return {"id": row.id, "name": row.name, "per_piece": to_major(int(row.per_piece), cur),
            "currency": cur, "daily_capacity": int(row.daily_capacity),
            "zones": [{"prefix": z.prefix, "transport": to_major(int(z.transport), cur),
                       "co2_g": int(z.co2_g)} for z in zones]}  # fmt: skip


def load_sites(conn: Connection) -> list[Site]:
    """Every site with its zones; the site rows stay locked until the commit (PostgreSQL;
    SQLite's write lock is held from ``BEGIN IMMEDIATE``), so routings serialise on them."""
    rows = conn.execute(select(_sites).order_by(_sites.c.id).with_for_update()).all()
    zones: dict[str, list[Zone]] = {}
    for z in conn.execute(select(_zones).order_by(_zones.c.site_id, _zones.c.prefix)):
        zones.setdefault(z.site_id, []).append(Zone(z.prefix, int(z.transport), int(z.co2_g)))
    return [Site(r.id, int(r.per_piece), int(r.daily_capacity), tuple(zones.get(r.id, ())))
            for r in rows]  # fmt: skip


def used_on(conn: Connection, day: date) -> dict[str, int]:
    """How many bills each site took on ``day``."""
    stmt = (
        select(_routes.c.site_id, func.count())
        .where(and_(_routes.c.day == day, _routes.c.site_id.is_not(None)))
        .group_by(_routes.c.site_id)
    )
    return {str(site): int(n) for site, n in conn.execute(stmt)}


def _paper_bills(conn: Connection, bill_ids: Iterable[int]) -> list[tuple[Any, str]]:
    """The bills (rows) to mail on paper, not routed yet, with the customer's postal code: the
    profile gives a postal code and asks for ``paper`` or ``both`` (a customer with no
    profile has no address to mail to). Read in chunks of ``CHUNK`` bills."""
    wanted = sorted(set(bill_ids))
    out: list[tuple[Any, str]] = []
    for i in range(0, len(wanted), CHUNK):
        part = wanted[i : i + CHUNK]
        done = set(conn.execute(select(_routes.c.bill_id)
                                .where(_routes.c.bill_id.in_(part))).scalars())  # fmt: skip
        rows = [r for r in conn.execute(select(_bills).where(_bills.c.id.in_(part)))
                if int(r.id) not in done]  # fmt: skip
        profile: dict[tuple[str, str], str] = {}
        stmt = select(_fields.c.customer_id, _fields.c.field, _fields.c.value).where(and_(
            _fields.c.customer_id.in_({r.customer_id for r in rows}), _fields.c.scope == "",
            _fields.c.field.in_(("postal_code", "delivery"))))  # fmt: skip
        for customer, name, value in conn.execute(stmt):
            profile[(str(customer), str(name))] = str(value)
        for r in rows:
            code = profile.get((r.customer_id, "postal_code"))
            if code and profile.get((r.customer_id, "delivery"), "paper") in PAPER:
                out.append((r, code))
    return sorted(out, key=lambda found: int(found[0].id))


def _candidate(s: Score) -> dict[str, Any]:
    return {"site": s.site, "prefix": s.prefix, "per_piece": s.per_piece,
            "transport": s.transport, "cost": s.cost, "co2_g": s.co2_g, "used": s.used,
            "capacity": s.capacity, "eligible": s.eligible, "why": s.why}  # fmt: skip


def route_paper(conn: Connection, bill_ids: Sequence[int], day: date, now: datetime) -> int:
    """Route the paper bills among ``bill_ids`` that have no route yet (in bill id order), to be
    printed on ``day``; a bill no site can take gets a route without a site and a
    ``paper_unroutable`` event. Returns how many bills were routed to a site."""
    bills = _paper_bills(conn, bill_ids)
    if not bills:
        return 0
    by_id = {int(row.id): row for row, _ in bills}
    routes = route_all(load_sites(conn), [(int(row.id), code) for row, code in bills],
                       used_on(conn, day))  # fmt: skip
    for bill_id, route in routes:
        _save(conn, by_id[bill_id], route, day, now)
    return sum(1 for _, route in routes if route.choice is not None)


def _save(conn: Connection, bill: Any, route: Route, day: date, now: datetime) -> None:
    choice = route.choice
    candidates = [_candidate(s) for s in route.scores]
    conn.execute(insert(_routes).values(
        bill_id=int(bill.id), site_id=None if choice is None else choice.site, day=day,
        postal_code=route.postal_code, cost=None if choice is None else choice.cost,
        co2_g=None if choice is None else choice.co2_g, reason=route.reason[:500],
        candidates=candidates, routed_at=now))  # fmt: skip
    if choice is None:
        reason = (f"paper bill {bill.number} for {bill.customer_id} ({route.postal_code}): "
                  f"{route.reason}")  # fmt: skip
        data = {"bill": int(bill.id), "number": bill.number, "customer": bill.customer_id,
                "postal_code": route.postal_code, "day": day.isoformat(),
                "candidates": candidates}  # fmt: skip
        conn.execute(insert(_events).values(kind=UNROUTABLE, meter_id=None, reason=reason[:500],
                                            at=now, data=data))  # fmt: skip


def delivery_entries(conn: Connection, bill_id: int, currency: str) -> list[dict[str, Any]]:
    """The bill's paper route as its ``delivery`` entry (money as decimal strings), if any."""
    row = conn.execute(select(_routes).where(_routes.c.bill_id == bill_id)).first()
    if row is None:
        return []

    def money(v: int | None) -> str | None:
        return None if v is None else to_major(int(v), currency)

    candidates = [{**c, **{k: money(c[k]) for k in ("per_piece", "transport", "cost")}}
                  for c in row.candidates]  # fmt: skip
    return [{"channel": "paper", "status": "routed" if row.site_id else "unroutable",
             "site": row.site_id, "day": row.day.isoformat(), "postal_code": row.postal_code,
             "cost": money(row.cost), "co2_g": None if row.co2_g is None else int(row.co2_g),
             "reason": row.reason, "candidates": candidates}]  # fmt: skip


def batch_bills(conn: Connection, site_id: str, day: date) -> list[int]:
    """The bills the site prints on ``day``, in postal-code order (then bill number)."""
    stmt = (
        select(_routes.c.bill_id, _routes.c.postal_code, _bills.c.number)
        .join(_bills, _bills.c.id == _routes.c.bill_id)
        .where(and_(_routes.c.site_id == site_id, _routes.c.day == day))
    )
    rows = sorted(conn.execute(stmt), key=lambda r: (normalize(r.postal_code), r.number))
    return [int(r.bill_id) for r in rows]
