"""Reading what billing needs from the ledger (I/O): each customer's entries up to the end of a
period, as ``EntryView`` s, with the providers' accounts and the tariffs' rates."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import aliased

from hub.billing.lines import EntryView, unit_of, without_fees
from hub.ledger.bulk import CHUNK
from hub.ledger.sql import accounts, entries, lines
from hub.models import AccountKind, EntryKind, Meter, Provider, TariffVersion, table
from protocol.tariff import Tariff

CHARGES = {EntryKind.USAGE.value, EntryKind.STANDING.value, EntryKind.SUBSCRIPTION.value}
_meters = table(Meter)
_providers = table(Provider)
_versions = table(TariffVersion)


def revenue_accounts(conn: Connection) -> dict[str, tuple[str, str]]:
    """Provider account id -> (provider id, tier); a platform account with no provider row is
    the provider ``platform``."""
    out = {
        row.account_id: (row.id, row.tier)
        for row in conn.execute(select(_providers.c.account_id, _providers.c.id, _providers.c.tier))
    }
    for (account_id,) in conn.execute(
        select(accounts.c.id).where(accounts.c.kind == AccountKind.PLATFORM.value)
    ):
        out.setdefault(account_id, ("platform", "platform"))
    return out


def load_entries(conn: Connection, customer_ids: Iterable[str], end: datetime) -> list[EntryView]:
    """Every entry touching one of the customers' accounts effective before ``end``."""
    wanted = sorted(set(customer_ids))
    original = aliased(entries)
    heads: dict[int, Any] = {}
    for i in range(0, len(wanted), CHUNK):
        stmt = (
            select(
                entries.c.id,
                entries.c.kind,
                entries.c.effective_at,
                entries.c.meter_id,
                entries.c.metadata,
                original.c.kind.label("okind"),
                original.c.metadata.label("ometa"),
            )
            .join(lines, lines.c.entry_id == entries.c.id)
            .outerjoin(original, original.c.id == entries.c.reverses_id)
            .where(
                and_(lines.c.account_id.in_(wanted[i : i + CHUNK]), entries.c.effective_at < end)
            )
        )
        for row in conn.execute(stmt):
            heads[row.id] = row
    if not heads:
        return []
    ids = sorted(heads)
    entry_lines: dict[int, list[tuple[str, int]]] = {}
    for i in range(0, len(ids), CHUNK):
        stmt = select(lines.c.entry_id, lines.c.account_id, lines.c.amount).where(
            lines.c.entry_id.in_(ids[i : i + CHUNK])
        )
        for line in conn.execute(stmt):
            entry_lines.setdefault(int(line[0]), []).append((str(line[1]), int(line[2])))
    meter_ids = sorted({h.meter_id for h in heads.values() if h.meter_id})
    services: dict[str, str] = dict(conn.execute(select(_meters.c.id, _meters.c.service)
                                 .where(_meters.c.id.in_(meter_ids))).all())  # fmt: skip
    rates = _Rates(conn)
    return [_view(heads[i], entry_lines.get(i, []), services, rates) for i in ids]


def _view(
    head: Any, entry_lines: list[tuple[str, int]], services: Mapping[str, str], rates: _Rates
) -> EntryView:
    reversal = head.kind == EntryKind.REVERSAL.value and head.okind is not None
    kind = head.okind if reversal else head.kind
    meta = (head.ometa if reversal else head.metadata) or {}
    if isinstance(meta, str):
        meta = json.loads(meta)
    if kind not in CHARGES:
        return EntryView(head.id, head.effective_at, False, "", "", 0, entry_lines)
    service = str(meta.get("service") or services.get(head.meter_id, "") or "other")
    if kind == EntryKind.USAGE.value:
        quantity = int(meta.get("energy") or 0)
    else:
        quantity = int(meta.get("quantity", 1))
    unit = unit_of(service, kind)
    sign = -1 if reversal else 1
    if kind == EntryKind.SUBSCRIPTION.value:
        given = {str(meta["provider"]): str(meta["rate"])} if meta.get("rate") else {}
    elif isinstance(meta.get("selection"), dict):  # each provider's rate in its own tariff
        given = rates.chosen(meta["selection"].get("tariffs") or {}, kind)
    else:
        given = rates.of(meta.get("tariff"), meta.get("version"), kind)
    if isinstance(meta.get("priority_fees"), dict):
        entry_lines = without_fees(entry_lines, meta["priority_fees"], sign)
    return EntryView(head.id, head.effective_at, True, service, unit, sign * quantity,
                     entry_lines, given)  # fmt: skip


class _Rates:
    """Each tariff version's rate per provider, read once per version."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cache: dict[tuple[str, int, str], dict[str, str]] = {}

    def of(self, tariff_id: Any, version: Any, kind: str) -> dict[str, str]:
        if tariff_id is None or version is None:
            return {}
        slot = (str(tariff_id), int(version), kind)
        if slot not in self.cache:
            text = self.conn.execute(
                select(_versions.c.document).where(
                    and_(_versions.c.tariff_id == slot[0], _versions.c.version == slot[1])
                )
            ).scalar()
            self.cache[slot] = (
                component_rates(Tariff.model_validate_json(text), kind) if text else {}
            )
        return self.cache[slot]

    def chosen(self, tariffs: Mapping[str, Any], kind: str) -> dict[str, str]:
        """The rate of each provider a selection chose, in the tariff it came from
        (``tariffs``: provider -> ``"id@version"``, ``hub.rating.pricing``)."""
        out: dict[str, str] = {}
        for provider, ref in tariffs.items():
            tariff_id, _, version = str(ref).rpartition("@")
            rate = self.of(tariff_id, version, kind).get(provider) if version.isdigit() else None
            if rate is not None:
                out[provider] = rate
        return out


def component_rates(tariff: Tariff, kind: str) -> dict[str, str]:
    """Each provider's flat rate for ``kind`` (per kWh or m3, per day, or a tax rate) as a
    decimal string; a provider pricing by time of use or blocks has none."""
    out: dict[str, str] = {}
    for c in tariff.components:
        if kind == EntryKind.STANDING.value:
            value = c.per_day
        else:
            value = c.per_kwh if c.per_kwh is not None else c.per_m3
            if value is None and not c.tou and not c.blocks:
                value = c.tax_rate
        if value is not None:
            out[c.provider] = str(value)
    return out
