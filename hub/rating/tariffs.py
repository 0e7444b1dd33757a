"""Which tariff version is in force at a moment, read from ``tariff_versions``.

A version is in force from its ``valid_from`` until the next version's. A record older than a
tariff's first version is rated with the first version (there is nothing earlier to apply).
Parsed documents are cached by their text and version (not by tariff id: two databases in one
process, as in the tests, may hold different documents under the same tariff id and version).
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from hub.ledger.bulk import select_in
from hub.models import Tariff as TariffRow
from hub.models import TariffVersion, table
from protocol.messages import validate
from protocol.tariff import Tariff

_versions = table(TariffVersion)
_tariffs = table(TariffRow)
_parsed: dict[tuple[str, int], Tariff] = {}  # (document, version) -> parsed
_CACHE_MAX = 4096


@dataclass(frozen=True)
class TariffHistory:
    tariff_id: str
    starts: tuple[datetime, ...]  # valid_from, ascending
    tariffs: tuple[Tariff, ...]

    def at(self, moment: datetime) -> Tariff:
        """The version in force at ``moment``."""
        if len(self.tariffs) == 1:
            return self.tariffs[0]
        index = bisect.bisect_right(self.starts, moment) - 1
        return self.tariffs[max(index, 0)]


def parse_document(tariff_id: str, version: int, document: str) -> Tariff:
    key = (document, version)
    tariff = _parsed.get(key)
    if tariff is None:
        tariff = validate_document(document, version)
        if len(_parsed) >= _CACHE_MAX:
            _parsed.clear()
        _parsed[key] = tariff
    return tariff


def validate_document(document: str, version: int) -> Tariff:
    data = json.loads(document)
    data["version"] = version
    return validate(data, Tariff)


def load_histories(conn: Connection, tariff_ids: Iterable[str]) -> dict[str, TariffHistory]:
    """Every version of each tariff in ``tariff_ids``; tariffs without a version are absent."""
    ids = sorted(set(tariff_ids))
    if not ids:
        return {}
    rows: dict[str, list[tuple[datetime, Tariff]]] = {}
    found = select_in(conn, _versions, ("tariff_id", "version", "valid_from", "document"),
                      "tariff_id", ids, order_by="tariff_id, valid_from, version")  # fmt: skip
    for tariff_id, version, valid_from, document in found:
        tariff = parse_document(tariff_id, int(version), document)
        rows.setdefault(tariff_id, []).append((valid_from, tariff))
    return {
        tid: TariffHistory(tid, tuple(s for s, _ in vs), tuple(t for _, t in vs))
        for tid, vs in rows.items()
    }


def version_counts(conn: Connection, tariff_ids: Iterable[str]) -> dict[str, int]:
    """How many versions each tariff has (tariffs without one are absent), their rows locked
    FOR SHARE until the caller's transaction ends (PostgreSQL; SQLite's write transaction
    already excludes other writers), so no version is added meanwhile: ingest compares it, in
    its write transaction, with the histories it rated with (``load_histories``)."""
    ids = sorted(set(tariff_ids))
    if conn.dialect.name == "postgresql":
        select_in(conn, _tariffs, ("id",), "id", ids, order_by="id", lock="SHARE")
    versions = select_in(conn, _versions, ("tariff_id",), "tariff_id", ids)
    return dict(Counter(str(tariff_id) for (tariff_id,) in versions))
