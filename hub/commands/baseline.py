"""What each meter was last told of its credit (table ``credit_baselines``), so that a credit
state follows usage only when the agent cannot work its balance out alone.

The agent keeps ``local balance = state.balance - its own charges of the records after
as_of_seq`` (``agent.credit``). Each credit command queued (:func:`record`, called by
``hub.commands.store.enqueue_many``) sets the meter's baseline: the state's ``balance`` as
``expected``, its ``as_of_seq`` as ``seq``, and the digest of the rest of the state (tariff,
rules, tokens, selection). The settling transaction advances it by the meter's own charges while
the agent's figure stays right (``hub.control.derivation``); the ingest coordinator then sends
no state unless the digest changed or the baseline is older than the refresh interval. A
credit command that expires or is rejected never reached the agent: :func:`forget` drops its
baseline, so the meter's next usage is followed by a state again.

The functions take the caller's connection and never commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from hub.models import CreditBaseline, table
from protocol.messages import CreditState

T_BASELINES = table(CreditBaseline)
# What the agent's own pricing moves, so not part of the digest.
MOVING = frozenset({"balance", "as_of_seq", "carry"})
CHUNK = 500


@dataclass(frozen=True)
class Baseline:
    seq: int
    expected: int
    digest: str
    sent_at: datetime


def digest(params: Mapping[str, Any]) -> str:
    """The hash of a credit state's params (as the command carries them) but what moves."""
    rest = {k: v for k, v in params.items() if k not in MOVING}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def state_digest(state: CreditState) -> str:
    return digest(state.model_dump(mode="json", exclude_none=True))


def record(conn: Connection, commands: Sequence[Mapping[str, Any]], now: datetime) -> None:
    """The credit commands among ``commands`` (signed dicts) become their meters' baselines."""
    rows = {str(c["meter"]): _row(c, now) for c in commands if c["action"] == "credit"}
    if rows:
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(T_BASELINES)
        moved = ("command_id", "seq", "expected", "digest", "sent_at")
        conn.execute(
            stmt.on_conflict_do_update(index_elements=["meter_id"],
                                       set_={c: stmt.excluded[c] for c in moved}),
            list(rows.values()),
        )  # fmt: skip


def _row(command: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    params = command["params"]
    return {"meter_id": command["meter"], "command_id": command["id"], "seq": params["as_of_seq"],
            "expected": params["balance"], "digest": digest(params), "sent_at": now}  # fmt: skip


def forget(conn: Connection, command_ids: Iterable[str]) -> None:
    """These commands never reached their agents: drop the baselines they set."""
    ids = sorted(set(command_ids))
    for i in range(0, len(ids), CHUNK):
        conn.execute(delete(T_BASELINES).where(T_BASELINES.c.command_id.in_(ids[i : i + CHUNK])))


def load(conn: Connection, meter_ids: Sequence[str]) -> dict[str, Baseline]:
    b = T_BASELINES.c
    out: dict[str, Baseline] = {}
    for i in range(0, len(meter_ids), CHUNK):
        rows = conn.execute(select(b.meter_id, b.seq, b.expected, b.digest, b.sent_at)
                            .where(b.meter_id.in_(meter_ids[i : i + CHUNK])))  # fmt: skip
        out.update((m, Baseline(seq, expected, d, at)) for m, seq, expected, d, at in rows)
    return out


def advance(conn: Connection, moves: Mapping[str, tuple[int, int]]) -> None:
    """Move baselines to (seq, expected): records the agent priced as the hub did."""
    if not moves:
        return
    b = T_BASELINES.c
    conn.execute(
        update(T_BASELINES).where(b.meter_id == bindparam("m"))
        .values(seq=bindparam("s"), expected=bindparam("e")),
        [{"m": m, "s": seq, "e": expected} for m, (seq, expected) in sorted(moves.items())],
    )  # fmt: skip
