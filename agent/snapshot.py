"""What the status file says about a running engine: each meter's state, relay, last reading
and counters, the uplink, the outbox and the buses (``agent.status`` writes and reads it)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from agent.metering.intervals import MeterState
from agent.modbus.poller import BusPoller, MeterPoint
from agent.relay_rules import onoff
from agent.runtime import MeterRuntime
from protocol.messages import BusHealth


def snapshot(
    gateway: str,
    runtimes: Mapping[str, MeterRuntime],
    states: Mapping[str, MeterState],
    pollers: Sequence[BusPoller],
    *,
    uplink: bool,
    outbox: tuple[int, int],
    stats: dict[str, int],
) -> dict[str, Any]:
    """The status of a running engine (the file's content): ``outbox`` is (depth, unconfirmed)."""
    meters: dict[str, Any] = {}
    for mid, rt in runtimes.items():
        p = rt.point
        st = states.get(mid)
        wanted = rt.relay.wanted
        meters[mid] = {
            "bus": p.settings.bus,
            "unit": p.settings.unit,
            "model": p.model.model,
            "state": p.state,
            "relay": onoff(p.relay_on),
            "relay_wanted": None if wanted is None else onoff(wanted),
            "relay_cause": rt.relay.cause or None,
            "import_wh": p.import_wh,
            "last_reading": p.last_ok.isoformat() if p.last_ok else None,
            "last_error": p.last_error or None,
            "seq": st.seq if st else 0,
            "credit_action": rt.last_action[0],
            "counters": dict(vars(p.counters)),
        }
    return {
        "v": 1,
        "gateway": gateway,
        "pid": os.getpid(),
        "at": datetime.now(UTC).isoformat(),
        "uplink": {"connected": uplink},
        "outbox_depth": outbox[0],
        "outbox_unconfirmed": outbox[1],
        "stats": stats,
        "buses": {
            p.bus.name: {
                "transport": p.bus.transport,
                "alive": p.is_alive(),
                "cycles": p.cycles,
                "connected": p.line.connected,
                "reconnects": p.line.reconnects,
            }
            for p in pollers
        },
        "meters": meters,
    }


def bus_health(point: MeterPoint) -> dict[str, Any]:
    """A meter's bus counters and state as the uplink status reports them to the hub."""
    health = BusHealth(**vars(point.counters), state=point.state, last_error=point.last_error[:200])
    return health.model_dump()
