"""The demo's live terminal view: a table of meters and the event feed, redrawn in place."""

import sys
from collections.abc import Sequence
from typing import Any, TextIO

CLEAR = "\x1b[H\x1b[2J"


class View:
    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self.live = out.isatty()
        self._printed_events = 0

    def show(
        self,
        title: str,
        meters: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
        story: Sequence[tuple[str, bool]],
    ) -> None:
        if not self.live:
            for event in events[self._printed_events :]:
                self.out.write(f"  event  {_event_line(event)}\n")
            self._printed_events = len(events)
            self.out.flush()
            return
        lines = [title, "", _table(meters), "", "story:"]
        lines += [f"  [{'x' if done else ' '}] {text}" for text, done in story]
        lines += ["", "events (newest last):"]
        lines += [f"  {_event_line(e)}" for e in events[-12:]]
        self.out.write(CLEAR + "\n".join(lines) + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _table(meters: Sequence[dict[str, Any]]) -> str:
    header = ("meter", "customer", "relay", "online", "energy kWh", "balance")
    rows = [header] + [
        (
            m["id"],
            str(m.get("customer") or ""),
            str(m.get("relay", "?")),
            "yes" if m.get("online") else "no",
            f"{(m.get('import_wh') or 0) / 1000:.2f}",
            str(m.get("balance") or ""),
        )
        for m in meters
    ]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join(
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows
    )


def _event_line(event: dict[str, Any]) -> str:
    at = str(event.get("at", ""))[11:19]
    return (
        f"{at}  {event.get('kind', ''):<14} {event.get('meter') or '':<8} {event.get('reason', '')}"
    )
