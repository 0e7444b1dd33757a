"""The local status file: each meter's state, relay, last reading and counters, outbox depth.

Written atomically (temporary file, fsync, rename) every ``status.interval_s`` by the running
agent (``agent.snapshot`` says what it holds); ``smsa-agent --config X status`` prints it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from agent.errors import AgentError


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
