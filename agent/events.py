"""The agent's events as it makes them: a fresh id, the time now, a reason cut to the
protocol's length and no empty data fields (``protocol.messages.Event``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from protocol.messages import Event


def new_event(kind: str, meter: str | None, reason: str = "", **data: Any) -> Event:
    return Event(
        id=uuid.uuid4().hex,
        kind=kind,
        at=datetime.now(UTC),
        meter=meter,
        reason=reason[:500],
        data={k: v for k, v in data.items() if v is not None},
    )
