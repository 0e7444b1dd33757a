"""The local status file: each meter's state, relay, last reading and counters, outbox depth.

Written atomically (temporary file, fsync, rename) every ``status.interval_s`` by the running
agent (:func:`snapshot` of its engine); ``smsa-agent --config X status`` prints it.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AgentError
from agent.relay_rules import onoff

if TYPE_CHECKING:
    from agent.engine import Engine


class StatusUnavailable(AgentError):  # noqa: N818 (reads as a state, not an event)
    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


def write_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise StatusUnavailable(path, "no status file (is the agent running?)") from exc
    except (OSError, ValueError) as exc:
        raise StatusUnavailable(path, f"unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise StatusUnavailable(path, "not a status object")
    return data


def snapshot(engine: Engine) -> dict[str, Any]:
    """The status of a running engine (the file's content)."""
    meters: dict[str, Any] = {}
    for mid, rt in engine.meters.items():
        p = rt.point
        st = engine.states.get(mid)
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
        "gateway": engine.settings.gateway_id,
        "pid": os.getpid(),
        "at": datetime.now(UTC).isoformat(),
        "uplink": {"connected": bool(getattr(engine.uplink, "connected", False))},
        "outbox_depth": engine.outbox.depth(),
        "outbox_unconfirmed": engine.outbox.unconfirmed(),
        "stats": {
            "records": engine.records,
            "events": engine.events,
            "commands": engine.commands.commands,
            "rejected": engine.commands.rejected,
        },
        "buses": {
            p.bus.name: {
                "transport": p.bus.transport,
                "alive": p.is_alive(),
                "cycles": p.cycles,
                "connected": p.line.connected,
                "reconnects": p.line.reconnects,
            }
            for p in engine.pollers
        },
        "meters": meters,
    }
