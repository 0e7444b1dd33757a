"""Counters the HTTP side keeps itself, and the Prometheus text exposition of all counters."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

_NAME = re.compile(r"[^a-zA-Z0-9_]")


class Metrics:
    """Thread-safe monotonic counters and last-value gauges, named in Prometheus style."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._sums: dict[str, tuple[float, int]] = {}
        self._gauges: dict[str, float] = {}

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._counters[name] += by

    def observe(self, name: str, value: float) -> None:
        """Add one observation to a summary (exported as ``_sum`` and ``_count``)."""
        with self._lock:
            total, count = self._sums.get(name, (0.0, 0))
            self._sums[name] = (total + value, count + 1)

    def set_gauge(self, name: str, value: float) -> None:
        with self._lock:
            self._gauges[name] = value

    def snapshot(self) -> tuple[dict[str, int], dict[str, float], dict[str, tuple[float, int]]]:
        with self._lock:
            return dict(self._counters), dict(self._gauges), dict(self._sums)


def metric_name(name: str) -> str:
    clean = _NAME.sub("_", name)
    return clean if clean.startswith("smsa_") else f"smsa_{clean}"


def render(
    counters: Mapping[str, int | float],
    gauges: Mapping[str, int | float],
    summaries: Mapping[str, tuple[float, int]] | None = None,
    help_text: Mapping[str, str] | None = None,
) -> str:
    """Prometheus text format 0.0.4 for the given values (names prefixed ``smsa_``)."""
    lines: list[str] = []
    summaries = summaries or {}
    help_text = help_text or {}

    def block(kind: str, items: Iterable[tuple[str, int | float]], suffix: str = "") -> None:
        for raw, value in sorted(items):
            name = metric_name(raw)
            if suffix and not name.endswith(suffix):
                name += suffix
            lines.append(f"# HELP {name} {help_text.get(raw, raw.replace('_', ' '))}")
            lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name} {_num(value)}")

    block("counter", counters.items(), "_total")
    block("gauge", gauges.items())
    for raw, (total, count) in sorted(summaries.items()):
        name = metric_name(raw)
        lines.append(f"# HELP {name} {help_text.get(raw, raw.replace('_', ' '))}")
        lines.append(f"# TYPE {name} summary")
        lines.append(f"{name}_sum {_num(total)}")
        lines.append(f"{name}_count {count}")
    return "\n".join(lines) + "\n"


def _num(value: int | float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
