"""Import feeds as rows (pure): JSON ``{"rows": [...]}`` or CSV with a header, each row checked
on its own so a bad row is reported by number and field and never stops the good ones."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")
MAX_ROWS = 100_000


class FeedError(ValueError):
    """The feed as a whole is unreadable (not JSON with ``rows``, or CSV without the header)."""


@dataclass
class Report:
    accepted: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    def reject(self, row: int, name: str, error: str) -> None:
        self.rejected.append({"row": row, "field": name, "error": error})

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "rejected": self.rejected,
                "conflicts": self.conflicts, "mismatches": self.mismatches}  # fmt: skip


class RowError(ValueError):
    def __init__(self, name: str, error: str) -> None:
        super().__init__(f"{name}: {error}")
        self.field = name
        self.error = error


def read_rows(body: bytes, content_type: str, header: Sequence[str]) -> list[dict[str, Any]]:
    """The feed's rows (row 1 is the first data row); FeedError for an unreadable feed."""
    if "csv" in content_type:
        try:
            text = body.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise FeedError("CSV must be UTF-8") from exc
        reader = csv.DictReader(io.StringIO(text))
        missing = [h for h in header if h not in (reader.fieldnames or [])]
        if missing:
            raise FeedError(f"CSV header lacks {', '.join(missing)}")
        rows: list[dict[str, Any]] = [dict(r) for r in reader]
    else:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FeedError("body is neither JSON nor CSV (Content-Type: text/csv)") from exc
        if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
            raise FeedError('JSON body must be {"rows": [...]}')
        rows = data["rows"]
    if len(rows) > MAX_ROWS:
        raise FeedError(f"at most {MAX_ROWS} rows per feed")
    return rows


def check_rows(
    rows: Sequence[Any], check: Callable[[Mapping[str, Any]], T], report: Report
) -> list[tuple[int, T]]:
    """Each row through ``check`` (RowError for a bad field): the good ones with their row
    numbers; the bad ones into ``report``."""
    good: list[tuple[int, T]] = []
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, Mapping):
            report.reject(n, "row", "must be an object")
            continue
        try:
            good.append((n, check(row)))
        except RowError as exc:
            report.reject(n, exc.field, exc.error)
    return good


def instant(row: Mapping[str, Any], name: str) -> datetime:
    value = row.get(name)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise RowError(name, "must be an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise RowError(name, "needs a time zone (Z or +hh:mm)")
    return moment


def integer(row: Mapping[str, Any], name: str, *, maximum: int) -> int:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowError(name, "must be a whole number")
    text = str(value).strip()
    if not text.isdigit() or int(text) > maximum:
        raise RowError(name, f"must be a whole number from 0 to {maximum}")
    return int(text)


def text(row: Mapping[str, Any], name: str, pattern: Callable[[str], bool], what: str) -> str:
    value = row.get(name)
    if not isinstance(value, str) or not pattern(value):
        raise RowError(name, what)
    return value
