"""What a batch reads (meters, rating states, held and posted records, providers, mixes,
meters' pricing and what provider selection decides with) and the rating states it writes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import Select, func, literal_column, null, or_, select, tuple_, union_all
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnClause

from hub.ingest.model import (
    CHUNK,
    T_ACCOUNTS,
    T_CARRY,
    T_EVENTS,
    T_METERS,
    T_MIX,
    T_PENDING,
    T_POSTED,
    T_PROVIDERS,
    InvalidHeld,
    MeterCfg,
    Rec,
)
from hub.ingest.plan import Late
from hub.ledger import platform_account_id
from hub.ledger.bulk import any_of, bulk_insert, select_in
from hub.rating.mix import MixWindow
from hub.rating.payers import load_periods, load_sharers
from hub.rating.pricing import Market, MeterPricing
from hub.rating.pricing_store import load_market, load_pricing
from hub.rating.register import Claim, Edge
from hub.rating.state import MeterState
from hub.rating.tariffs import TariffHistory
from protocol.errors import ProtocolError
from protocol.messages import Event, UsageRecord, parse
from protocol.tariff import Tariff


def load_meters(conn: Connection, ids: Iterable[str]) -> dict[str, MeterCfg]:
    ids = sorted(ids)
    out: dict[str, MeterCfg] = {}
    cols = ("id", "gateway_id", "customer_id", "tariff_id", "split_rule", "online", "relay",
            "last_seen_at")  # fmt: skip
    for mid, gateway, customer, tariff, rule, online, relay, seen in select_in(
        conn, T_METERS, cols, "id", ids
    ):
        out[mid] = MeterCfg(mid, gateway, customer, tariff, rule, bool(online), relay, seen)
    for mid, sharers in load_sharers(conn, out).items():  # each meter's in customer_id order
        out[mid].sharers.extend(sharers)
    for mid, periods in load_periods(conn, out).items():
        out[mid].periods = periods
    accounts = {a for m in out.values() for a in (m.split_rule or {}).get("accounts", {})}
    if accounts:
        known = {row[0] for row in select_in(conn, T_ACCOUNTS, ("id",), "id", sorted(accounts))}
        for m in out.values():
            missing = set((m.split_rule or {}).get("accounts", {})) - known
            if missing:
                m.problem = f"split rule of {m.id!r} names unknown accounts {sorted(missing)}"
    return out


def load_states(
    conn: Connection, wanted: Iterable[str], cache: dict[str, MeterState]
) -> dict[str, MeterState]:
    """Each meter's rating state: from ``cache`` where present, else from ``meter_carry``."""
    out = {m: cache[m] for m in wanted if m in cache}
    ids = sorted(m for m in wanted if m not in out)
    for meter_id, state in select_in(conn, T_CARRY, ("meter_id", "state"), "meter_id", ids):
        out[meter_id] = MeterState.load(state)
    return out


def due_pending(conn: Connection, held_before: datetime) -> list[Any]:
    """Meters (and their gateways) with records held since before ``held_before`` (released
    even without news)."""
    stmt = select(T_PENDING.c.meter_id, T_PENDING.c.gateway_id).where(
        T_PENDING.c.received_at <= held_before
    )
    return list(conn.execute(stmt.distinct()))


def load_pending(
    conn: Connection, ids: Iterable[str]
) -> tuple[dict[tuple[str, int], Rec], list[InvalidHeld]]:
    """Every held record of the meters ``ids``, and the held rows that fail validation now."""
    out: dict[tuple[str, int], Rec] = {}
    invalid: list[InvalidHeld] = []
    cols = ("meter_id", "seq", "gateway_id", "record", "received_at")
    for meter_id, seq, gateway, text, received in select_in(
        conn, T_PENDING, cols, "meter_id", sorted(ids)
    ):
        try:
            record = parse(text.encode(), UsageRecord)
        except ProtocolError as exc:
            invalid.append(InvalidHeld(meter_id, int(seq), gateway, text, exc.reason))
            continue
        out[(meter_id, int(seq))] = Rec(record, gateway, received, True)
    return out, invalid


def posted_keys(conn: Connection, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for i in range(0, len(keys), CHUNK):
        stmt = select(T_POSTED.c.meter_id, T_POSTED.c.seq).where(
            tuple_(T_POSTED.c.meter_id, T_POSTED.c.seq).in_(keys[i : i + CHUNK])
        )
        out.update((row.meter_id, int(row.seq)) for row in conn.execute(stmt))
    return out


LATE_CHUNK = 100  # late records read per statement (SQLite allows 500 terms in a compound SELECT)


def late_context(
    conn: Connection, late: Sequence[tuple[UsageRecord, Tariff]]
) -> dict[tuple[str, int], Late]:
    """For each late record (with the tariff version in force at its end): its meter's posted
    records nearest below and above its seq (``Late.below``, ``Late.above``: where
    ``hub.rating.register.place`` puts it) and the energy posted in its month before its start
    (``Late.mtd``, the month in the tariff's zone, for inclining blocks). One statement per
    ``LATE_CHUNK`` records, three subqueries each."""
    out: dict[tuple[str, int], Late] = {}
    for i in range(0, len(late), LATE_CHUNK):
        chunk = late[i : i + LATE_CHUNK]
        found: dict[tuple[int, int], Any] = {}
        for row in conn.execute(union_all(*(q for n, (r, tariff) in enumerate(chunk)
                                            for q in _around(n, r, tariff)))):  # fmt: skip
            found[(int(row[0]), int(row[1]))] = row
        for n, (r, _) in enumerate(chunk):
            low, high, mtd = found.get((n, 0)), found.get((n, 1)), found[(n, 2)]
            below = None if low is None else Edge(int(low[2]), int(low[3]), low[4], int(low[5]))
            above = None if high is None else Edge(int(high[2]), int(high[3]), high[4],
                                                   int(high[5]))  # fmt: skip
            out[(r.meter, r.seq)] = Late(below, above, Fraction(int(mtd[2])))
    return out


def _around(n: int, r: UsageRecord, tariff: Tariff) -> list[Select[Any]]:
    """Record ``n`` of a chunk: its nearest posted records below (tag 0) and above (tag 1) and
    its month-to-date energy (tag 2), as rows (n, tag, seq or energy, wh, at, segment)."""
    p = T_POSTED.c
    low = (select(p.seq, p.import_end.label("wh"), p.interval_end.label("at"), p.segment)
           .where(p.meter_id == r.meter, p.seq < r.seq)
           .order_by(p.seq.desc()).limit(1).subquery())  # fmt: skip
    high = (select(p.seq, p.import_start.label("wh"), p.interval_start.label("at"), p.segment)
            .where(p.meter_id == r.meter, p.seq > r.seq)
            .order_by(p.seq).limit(1).subquery())  # fmt: skip
    local = r.start.astimezone(tariff.zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    tag: ColumnClause[Any] = literal_column(str(n))
    mtd = select(tag, literal_column("2"),
                 func.coalesce(func.sum(p.import_end - p.import_start), 0),
                 null(), null(), null()).where(
        p.meter_id == r.meter,
        p.interval_start >= month_start.astimezone(UTC),
        p.interval_end <= r.start,
    )  # fmt: skip
    return [
        select(tag, literal_column("0"), low.c.seq, low.c.wh, low.c.at, low.c.segment),
        select(tag, literal_column("1"), high.c.seq, high.c.wh, high.c.at, high.c.segment),
        mtd,
    ]


RESET_CLAIMS = 100  # a meter's newest register_reset events read for a reset claim


def reset_claims(
    conn: Connection, gateways: Mapping[str, str], batch: Iterable[tuple[str, Event]] = ()
) -> dict[str, list[Claim]]:
    """For each meter of ``gateways`` (meter id -> its gateway), the register resets its
    gateway reported (``register_reset`` events with ``old_wh``, ``new_wh``, ``old_at``,
    ``new_at``): its ``RESET_CLAIMS`` newest stored ones, newest first, then those of ``batch``
    (this batch's events, stored only when it commits). One statement."""
    e = T_EVENTS.c
    newest = func.row_number().over(partition_by=e.meter_id, order_by=e.id.desc())
    ranked = (select(e.meter_id, e.data, newest.label("n"))
              .where(e.kind == "register_reset", e.meter_id.in_(sorted(gateways)))
              .subquery())  # fmt: skip
    rows = conn.execute(
        select(ranked.c.meter_id, ranked.c.data).where(ranked.c.n <= RESET_CLAIMS)
        .order_by(ranked.c.meter_id, ranked.c.n)
    )  # fmt: skip
    found: dict[str, list[Claim | None]] = {m: [] for m in gateways}
    for meter_id, data in rows:
        if isinstance(data, dict) and data.get("gateway") == gateways[meter_id]:
            found[meter_id].append(Claim.from_data(data))
    for gw, ev in batch:
        meter = ev.meter
        if ev.kind == "register_reset" and meter is not None and gw == gateways.get(meter):
            found[meter].append(Claim.from_data(ev.data))
    return {m: [c for c in claims if c is not None] for m, claims in found.items()}


def provider_accounts(conn: Connection, histories: Iterable[TariffHistory]) -> dict[str, str]:
    names = sorted({c.provider for h in histories for t in h.tariffs for c in t.components})
    found: dict[str, str] = dict(select_in(conn, T_PROVIDERS, ("id", "account_id"), "id", names))
    # Generators named in mix tables are providers too.
    gens = conn.execute(select(T_MIX.c.measured)).scalars().all()
    extra = sorted({g for m in gens for g in (m or {})} - set(found))
    if extra:
        stmt2 = select(T_PROVIDERS.c.id, T_PROVIDERS.c.account_id)
        found.update({r.id: r.account_id for r in conn.execute(
            stmt2.where(T_PROVIDERS.c.id.in_(extra)))})  # fmt: skip
    return found


def pricing_inputs(
    conn: Connection, meters: Mapping[str, MeterCfg], ids: Iterable[str], currency: str
) -> tuple[dict[str, MeterPricing], Market, str | None]:
    """For the meters ``ids``: the pricing history of each that has one; if any is priced by
    a selection, the market (providers' tiers and fees, its customers' agreements); if any by
    ``priority``, the platform's account (None: not opened). One statement without
    selections, three or four with."""
    pricing = load_pricing(conn, ids)
    steps = [(m, s) for m, p in pricing.items() for s in p.steps if s.policy is not None]
    if not steps:
        return pricing, Market(), None
    customers = {c for m, _ in steps if (c := meters[m].customer_id) is not None}
    market = load_market(conn, customers, currency)
    platform = None
    if any(s.policy == "priority" for _, s in steps):
        account = platform_account_id(currency)
        found = select_in(conn, T_ACCOUNTS, ("id",), "id", [account])
        platform = account if found else None
    return pricing, market, platform


def mix_windows(conn: Connection, meter_ids: Iterable[str]) -> dict[str, list[MixWindow]]:
    """Each meter's generation-mix windows (its own and those for every meter)."""
    ids = sorted(meter_ids)
    rows = conn.execute(select(T_MIX).where(
        or_(T_MIX.c.meter_id.is_(None), any_of(conn, T_MIX.c.meter_id, ids))
    )).all()  # fmt: skip
    if not rows:
        return {}
    out: dict[str, list[MixWindow]] = {}
    for meter_id in ids:
        for row in rows:
            if row.meter_id is None or row.meter_id == meter_id:
                measured = {str(k): int(v) for k, v in (row.measured or {}).items()}
                out.setdefault(meter_id, []).append(
                    MixWindow(row.pool, row.start, row.end, measured)
                )
    return out


_CARRY_UPSERT = (
    "ON CONFLICT (meter_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)


def save_states(conn: Connection, states: dict[str, str], now: datetime) -> None:
    """Upsert each meter's rating state in one statement (``meter_carry``)."""
    rows = [{"meter_id": m, "state": s, "updated_at": now} for m, s in sorted(states.items())]
    bulk_insert(conn, T_CARRY, rows, on_conflict=_CARRY_UPSERT)
