"""What a batch reads (meters, rating states, held and posted records, providers, mixes) and
the rating states it writes."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, NamedTuple

from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.engine import Connection

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
    MeterCfg,
    Rec,
)
from hub.ledger import UsagePosting
from hub.ledger.bulk import bulk_insert, select_in
from hub.rating.mix import MixWindow
from hub.rating.payers import load_sharers
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


class InvalidHeld(NamedTuple):
    """A held row that is no longer a valid record (held by a version that validated less)."""

    meter_id: str
    seq: int
    gateway_id: str
    text: str
    reason: str


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


def posted_mtd(conn: Connection, tariff: Tariff, r: UsageRecord) -> Fraction:
    """Month-to-date energy before a late record: posted energy of its month before it."""
    local = r.start.astimezone(tariff.zone)
    month_start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stmt = select(func.coalesce(func.sum(T_POSTED.c.import_end - T_POSTED.c.import_start),
                                0)).where(
        T_POSTED.c.meter_id == r.meter,
        T_POSTED.c.interval_start >= month_start.astimezone(UTC),
        T_POSTED.c.interval_end <= r.start,
    )  # fmt: skip
    return Fraction(int(conn.execute(stmt).scalar_one()))


def posted_edges(
    conn: Connection, meter_id: str, seq: int, unwritten: Iterable[UsagePosting] = ()
) -> tuple[Edge | None, Edge | None]:
    """The meter's posted records nearest below and above ``seq`` (a late record's place),
    including ``unwritten`` ones (this batch's postings of the meter, not yet written)."""
    p = T_POSTED.c
    low = conn.execute(
        select(p.seq, p.import_end, p.interval_end, p.segment)
        .where(p.meter_id == meter_id, p.seq < seq).order_by(p.seq.desc()).limit(1)
    ).first()  # fmt: skip
    high = conn.execute(
        select(p.seq, p.import_start, p.interval_start, p.segment)
        .where(p.meter_id == meter_id, p.seq > seq).order_by(p.seq).limit(1)
    ).first()  # fmt: skip
    below = None if low is None else Edge(int(low[0]), int(low[1]), low[2], int(low[3]))
    above = None if high is None else Edge(int(high[0]), int(high[1]), high[2], int(high[3]))
    for u in unwritten:
        if u.seq < seq and (below is None or u.seq > (below.seq or 0)):
            below = Edge(u.seq, u.import_end, u.interval_end, u.segment)
        elif u.seq > seq and (above is None or u.seq < (above.seq or 0)):
            above = Edge(u.seq, u.import_start, u.interval_start, u.segment)
    return below, above


RESET_CLAIMS = 100  # a meter's newest register_reset events read for a reset claim


def reset_claims(
    conn: Connection, meter_id: str, gateway_id: str, batch: Iterable[tuple[str, Event]] = ()
) -> list[Claim]:
    """The register resets the meter's gateway reported (``register_reset`` events with
    ``old_wh``, ``new_wh``, ``old_at``, ``new_at``): stored ones, newest first, then those of
    ``batch`` (this batch's events, stored only when it commits)."""
    rows = conn.execute(
        select(T_EVENTS.c.data)
        .where(T_EVENTS.c.meter_id == meter_id, T_EVENTS.c.kind == "register_reset")
        .order_by(T_EVENTS.c.id.desc()).limit(RESET_CLAIMS)
    ).scalars()  # fmt: skip
    found = [Claim.from_data(d) for d in rows
             if isinstance(d, dict) and d.get("gateway") == gateway_id]  # fmt: skip
    found += [Claim.from_data(e.data) for gw, e in batch if gw == gateway_id
              and e.meter == meter_id and e.kind == "register_reset"]  # fmt: skip
    return [c for c in found if c is not None]


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


def mix_windows(conn: Connection, by_meter: dict[str, list[Rec]]) -> dict[str, list[MixWindow]]:
    rows = conn.execute(select(T_MIX).where(
        or_(T_MIX.c.meter_id.is_(None), T_MIX.c.meter_id.in_(sorted(by_meter)))
    )).all()  # fmt: skip
    if not rows:
        return {}
    out: dict[str, list[MixWindow]] = {}
    for meter_id in by_meter:
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
