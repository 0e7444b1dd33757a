"""What each meter's agent works its balance out from (table ``credit_baselines``), so that a
credit state follows usage only when the agent cannot work the balance out alone.

The agent keeps ``local balance = state.balance - its own charges of the records after
as_of_seq`` (``agent.credit``). Each meter has a chain (``hub.commands.chain``): the settling
transaction extends it by each batch whose records moved the balance by nothing but their own
charges (:func:`after_batches`), and restarts it otherwise; a credit command queued on the chain
blesses it (:func:`record`, called by ``hub.commands.store.enqueue_many``). No state is sent
after a batch whose step held on a blessed chain (``hub.ingest.credit_report``), unless the rest of
the state (tariff, rules, tokens, selection: the digest) changed or the blessing is older than
the refresh interval. A credit command that expires or is rejected never reached the agent:
:func:`forget` drops the chain it blessed, so the meter's next usage is followed by a state.

Locks (PostgreSQL): a transaction reads the rows it will change ``FOR UPDATE`` in meter order,
before any command row (``hub.commands.store``), so writers of both tables take them in one
order. The functions take the caller's connection and never commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.engine import Connection

from hub.commands.chain import Chain, after_batch, after_state
from hub.ledger.bulk import insert_columns, select_in
from hub.models import CreditBaseline, table
from protocol.messages import CreditState
from protocol.tariff import Tariff

T_BASELINES = table(CreditBaseline)
# What the agent's own pricing moves, so not part of the digest.
MOVING = frozenset({"balance", "as_of_seq", "carry"})
CHUNK = 500
COLUMNS = ("points", "digest", "command_id", "sent_at")


def digest(params: Mapping[str, Any]) -> str:
    """The hash of a credit state's params (as the command carries them) but what moves."""
    rest = {k: v for k, v in params.items() if k not in MOVING and k != "tariff"}
    return _hash(_text(params.get("tariff")), rest)


class StateDigests:
    """:func:`digest` of many states as they would be sent, each tariff object written out once
    (the states of one report share theirs); one per flush, it holds the tariffs it saw."""

    def __init__(self) -> None:
        self._tariffs: dict[int, tuple[Tariff, str]] = {}

    def __call__(self, state: CreditState) -> str:
        held = self._tariffs.get(id(state.tariff))
        if held is None or held[0] is not state.tariff:
            held = (state.tariff, _text(state.tariff.model_dump(mode="json", exclude_none=True)))
            self._tariffs[id(state.tariff)] = held
        rest = state.model_dump(mode="json", exclude_none=True, exclude=set(MOVING | {"tariff"}))
        return _hash(held[1], rest)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _hash(tariff: str, rest: Mapping[str, Any]) -> str:
    return hashlib.sha256(f"{tariff}\n{_text(rest)}".encode()).hexdigest()


def load(conn: Connection, meter_ids: Iterable[str]) -> dict[str, Chain]:
    """The meters' chains, their rows locked in meter order (PostgreSQL)."""
    rows = select_in(conn, T_BASELINES, ("meter_id", *COLUMNS), "meter_id",
                     sorted(set(meter_ids)), order_by="meter_id", lock="UPDATE")  # fmt: skip
    return {
        m: Chain(tuple((s, v) for s, v in json.loads(points)), dig, command, at)
        for m, points, dig, command, at in rows
    }


# one statement a batch (SQLite: a few); a Core multi-row insert is compiled anew for every
# row count, which took a fifth of a settler's CPU in ``bench.fleet``
_UPSERT = "ON CONFLICT (meter_id) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in COLUMNS
)


def _save(conn: Connection, chains: Mapping[str, Chain]) -> None:
    ids = sorted(chains)
    insert_columns(conn, T_BASELINES, {
        "meter_id": ids,
        "points": [json.dumps(chains[m].points, separators=(",", ":")) for m in ids],
        "digest": [chains[m].digest for m in ids],
        "command_id": [chains[m].command_id for m in ids],
        "sent_at": [chains[m].sent_at for m in ids],
    }, _UPSERT)  # fmt: skip


def after_batches(
    conn: Connection, steps: Mapping[str, tuple[Sequence[tuple[int, int]], int, int]]
) -> dict[str, Chain]:
    """Extend or restart the chains of the meters in ``steps`` (meter -> (charges, state seq,
    balance), as ``hub.commands.chain.after_batch`` takes them); the chains whose step held,
    as they are now."""
    found = load(conn, steps)
    moved: dict[str, Chain] = {}
    held: dict[str, Chain] = {}
    for meter_id, (charges, state_seq, balance) in steps.items():
        chain, ok = after_batch(found.get(meter_id), charges, state_seq, balance)
        moved[meter_id] = chain
        if ok:
            held[meter_id] = chain
    _save(conn, moved)
    return held


def record(conn: Connection, commands: Sequence[Mapping[str, Any]], now: datetime) -> None:
    """The credit commands among ``commands`` (signed dicts) bless or restart their meters'
    chains."""
    credits = {str(c["meter"]): c for c in commands if c["action"] == "credit"}
    if not credits:
        return
    found = load(conn, credits)
    chains = {}
    for meter_id, command in credits.items():
        params = command["params"]
        chains[meter_id] = after_state(found.get(meter_id), params["as_of_seq"],
                                       params["balance"], digest=digest(params),
                                       command_id=str(command["id"]), now=now)  # fmt: skip
    _save(conn, chains)


def forget(conn: Connection, command_ids: Iterable[str]) -> None:
    """These commands never reached their agents: drop the chains they blessed."""
    ids = sorted(set(command_ids))
    for i in range(0, len(ids), CHUNK):
        conn.execute(delete(T_BASELINES).where(T_BASELINES.c.command_id.in_(ids[i : i + CHUNK])))
