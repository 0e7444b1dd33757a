"""Local credit per meter: price each usage record, keep the balance, decide cut-off offline.

The hub sends a :class:`CreditState` per meter: its balance including every usage record up to
``as_of_seq``, the tariff, the rules and the rounding carry. The book keeps

    local balance = state.balance - charges of the records with seq > as_of_seq priced here

plus the offline tokens redeemed here that the state does not list as settled or cancelled
(``agent.tokens``), with a charge log per (meter, seq) pruned at each new ``as_of_seq``. Pricing
uses the protocol's rating and apportioning, so the shares are what the hub computes for the
same record (the hub re-rates anyway). For a meter priced by a provider selection the state's
tariff is the chosen providers' components and ``state.selection`` says what was chosen and
why: priced here as any tariff, so the agent prices the hub's choice (the hub chooses again
per interval and records a record priced otherwise as a mismatch). Month-to-date energy for
inclining blocks is counted from the records priced here, reset at each calendar month in the
tariff's zone (a gateway that starts mid-month under-counts it until the next month). All
state is in the agent's SQLite file (``AgentStore``): :meth:`CreditBook.price` called inside
the engine's transaction for a closed interval commits with the meter's new state and the
outbox row.
"""

import json
import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

from agent import tokens
from agent.store import AgentStore
from protocol.apportion import apportion, dump_carry, load_carry
from protocol.messages import CreditState, UsageRecord
from protocol.rating import price_interval
from protocol.rules import Decision, Memory, Relay, evaluate
from protocol.tariff import Tariff

log = logging.getLogger(__name__)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS credit_meter (
        meter TEXT PRIMARY KEY,
        state TEXT,
        balance INTEGER,
        carry TEXT NOT NULL DEFAULT '{}',
        month TEXT NOT NULL DEFAULT '',
        month_wh INTEGER NOT NULL DEFAULT 0,
        memory TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE IF NOT EXISTS credit_charge (
        meter TEXT NOT NULL,
        seq INTEGER NOT NULL,
        amount INTEGER NOT NULL,
        shares TEXT NOT NULL,
        PRIMARY KEY (meter, seq)
    )""",
)


@dataclass
class _Meter:
    state: CreditState | None
    balance: int | None
    carry: dict[str, Fraction]
    month: str
    month_wh: int
    memory: Memory


class CreditBook:
    """Per-meter credit state and charges, thread-safe (see the module docstring)."""

    def __init__(self, store: AgentStore | Path) -> None:
        """``store``: the agent's store (shared), or a path to open one of its own."""
        self._store, self._owned = AgentStore.of(store)
        self.path = self._store.path
        with self._store.transaction() as conn:
            for statement in _SCHEMA:
                conn.execute(statement)
            tokens.ensure_schema(conn)

    def close(self) -> None:
        """Close the store if this book opened it (a shared one is closed by its owner)."""
        if self._owned:
            self._store.close()

    # -- pricing ------------------------------------------------------------------------------

    def price(self, record: UsageRecord) -> UsageRecord:
        """``record`` with its shares, tariff and version, charged to the local balance.

        A meter without a credit state yet gets its record back unpriced (empty shares). Pricing
        the same (meter, seq) again returns the same shares and charges nothing more.
        """
        with self._store.transaction() as conn:
            meter = self._load(conn, record.meter)
            if meter is None or meter.state is None:
                return record
            tariff = meter.state.tariff
            done = conn.execute(
                "SELECT shares FROM credit_charge WHERE meter = ? AND seq = ?",
                (record.meter, record.seq),
            ).fetchone()
            if done is not None:
                return _priced(record, tariff, json.loads(done[0]))
            month = _month(tariff, record.start)
            to_date = meter.month_wh if meter.month == month else 0
            amounts = price_interval(tariff, record.start, record.end, record.energy, to_date)
            shares, carry = apportion(amounts, meter.carry)
            charge = sum(shares.values())
            end_month = _month(tariff, record.end)
            if end_month == month:
                to_date += record.energy
            else:  # the interval crosses a month: count only what fell in the new month
                to_date = _energy_after_month_start(tariff, record)
            conn.execute(
                "INSERT INTO credit_charge (meter, seq, amount, shares) VALUES (?, ?, ?, ?)",
                (record.meter, record.seq, charge, json.dumps(shares)),
            )
            conn.execute(
                "UPDATE credit_meter SET balance = balance - ?, carry = ?, month = ?, month_wh = ?"
                " WHERE meter = ?",
                (charge, json.dumps(dump_carry(carry)), end_month, to_date, record.meter),
            )
        return _priced(record, tariff, shares)

    # -- hub state ----------------------------------------------------------------------------

    def apply(self, meter_id: str, state: CreditState, issued_at: datetime | None = None) -> bool:
        """Adopt the hub's ``state``; False (and nothing changes) if it is older than the one held.

        Local balance becomes ``state.balance`` minus the charges of records after
        ``state.as_of_seq``; the carry is the hub's unless records after it were priced here.
        A state issued (``issued_at``) after the hub's reconnect ends the hold it set; one the
        hub decided before the reconnect (delivered after it) does not.
        """
        with self._store.transaction() as conn:
            meter = self._load(conn, meter_id)
            if meter is None:
                conn.execute("INSERT INTO credit_meter (meter) VALUES (?)", (meter_id,))
                meter = self._load(conn, meter_id)
                assert meter is not None
            if meter.state is not None and state.as_of_seq < meter.state.as_of_seq:
                log.warning(
                    "meter %s: ignoring a credit state as of seq %d, older than seq %d",
                    meter_id,
                    state.as_of_seq,
                    meter.state.as_of_seq,
                )
                return False
            if (
                meter.state is not None
                and state.as_of_seq == meter.state.as_of_seq
                and tokens.behind(state.tokens, meter.state.tokens)
            ):
                log.info("meter %s: ignoring a credit state from before its tokens settled",
                         meter_id)  # fmt: skip
                return False
            conn.execute(
                "DELETE FROM credit_charge WHERE meter = ? AND seq <= ?",
                (meter_id, state.as_of_seq),
            )
            later, count = conn.execute(
                "SELECT coalesce(sum(amount), 0), count(*) FROM credit_charge WHERE meter = ?",
                (meter_id,),
            ).fetchone()
            carry = meter.carry if count else load_carry(state.carry)
            unsettled = tokens.unsettled(conn, meter_id, state.tokens)
            conn.execute(
                "UPDATE credit_meter SET state = ?, balance = ?, carry = ? WHERE meter = ?",
                (
                    state.model_dump_json(),
                    state.balance - int(later) + unsettled,
                    json.dumps(dump_carry(carry)),
                    meter_id,
                ),
            )
            since = meter.memory.hold_since
            if meter.memory.hold and (since is None or issued_at is None or issued_at >= since):
                # the hub has spoken again since it reconnected: its rules apply from now on
                update = {"hold": False, "hold_since": None}
                self._save_memory(conn, meter_id, meter.memory.model_copy(update=update))
        return True

    def credit(self, conn: sqlite3.Connection, meter_id: str, amount: int) -> int | None:
        """Add a redeemed token's ``amount`` to the local balance in the caller's transaction
        (``agent.tokens``); the new balance (None before the hub sent a credit state)."""
        conn.execute(
            "UPDATE credit_meter SET balance = balance + ? WHERE meter = ? AND balance IS NOT NULL",
            (amount, meter_id),
        )
        row = conn.execute("SELECT balance FROM credit_meter WHERE meter = ?", (meter_id,))
        found = row.fetchone()
        return None if found is None else found[0]

    def renumber(self, meter_id: str, shift: int, lowest: int) -> None:
        """Add ``shift`` to the seq of every charge of ``meter_id`` from seq ``lowest`` on (its
        records were renumbered above where the hub resumes them, ``agent/resume.py``); in the
        caller's transaction."""
        with self._store.transaction() as conn:
            # through negative seqs: no moved charge meets one not yet moved
            conn.execute(
                "UPDATE credit_charge SET seq = -(seq + ?) WHERE meter = ? AND seq >= ?",
                (shift, meter_id, lowest),
            )
            conn.execute(
                "UPDATE credit_charge SET seq = -seq WHERE meter = ? AND seq < 0", (meter_id,)
            )

    def balance(self, meter_id: str) -> int | None:
        """The local balance in minor units; None before the hub sent a credit state."""
        with self._store.read() as conn:
            meter = self._load(conn, meter_id)
        return None if meter is None else meter.balance

    def state(self, meter_id: str) -> CreditState | None:
        with self._store.read() as conn:
            meter = self._load(conn, meter_id)
        return None if meter is None else meter.state

    # -- decisions ----------------------------------------------------------------------------

    def decide(self, meter_id: str, now: datetime) -> Decision:
        """What the rules say now (``protocol.rules``). The decision is taken as carried out: a
        ``disconnect`` marks the meter disconnected, so it is not repeated at the next poll; call
        :meth:`set_relay` if the relay could not be switched or was switched otherwise."""
        with self._store.transaction() as conn:
            meter = self._load(conn, meter_id)
            if meter is None or meter.state is None or meter.balance is None:
                return Decision(action="none", reason="no credit state yet", rule="no_state")
            state = meter.state
            decision, memory = evaluate(
                meter.balance, state.rules, state.tariff.zone, meter.memory, now
            )
            if memory != meter.memory:
                self._save_memory(conn, meter_id, memory)
        if decision.action != "none":
            log.info(
                "meter %s: %s (%s): %s", meter_id, decision.action, decision.rule, decision.reason
            )
        return decision

    def set_relay(
        self,
        meter_id: str,
        relay: Relay,
        by_rules: bool = False,
        since: datetime | None = None,
    ) -> None:
        """Record the relay's actual state, e.g. after a hub command or a failed switch.

        The rules reconnect automatically only after a cut-off they made themselves
        (``by_rules``); a disconnect from the hub or an operator stays until reconnected. A
        reconnect from the hub (issued at ``since``) holds off automatic cut-off until the balance
        is positive again or the hub sends a credit state issued after it.
        """
        with self._store.transaction() as conn:
            meter = self._load(conn, meter_id)
            if meter is None:
                conn.execute("INSERT INTO credit_meter (meter) VALUES (?)", (meter_id,))
                memory = Memory()
            else:
                memory = meter.memory
            update = {
                "relay": relay,
                "cut_by_rules": by_rules and relay == "disconnected",
                "hold": not by_rules and relay == "connected",
                "hold_since": since if not by_rules and relay == "connected" else None,
            }
            self._save_memory(conn, meter_id, memory.model_copy(update=update))

    def relay(self, meter_id: str) -> Relay:
        """The relay state the rules believe in (``connected`` for an unknown meter)."""
        with self._store.read() as conn:
            meter = self._load(conn, meter_id)
        return "connected" if meter is None else meter.memory.relay

    # -- storage ------------------------------------------------------------------------------

    @staticmethod
    def _load(conn: sqlite3.Connection, meter_id: str) -> _Meter | None:
        row = conn.execute(
            "SELECT state, balance, carry, month, month_wh, memory FROM credit_meter"
            " WHERE meter = ?",
            (meter_id,),
        ).fetchone()
        if row is None:
            return None
        state = None if row[0] is None else CreditState.model_validate_json(row[0])
        return _Meter(
            state=state,
            balance=row[1],
            carry=load_carry(json.loads(row[2])),
            month=row[3],
            month_wh=int(row[4]),
            memory=Memory.model_validate_json(row[5]),
        )

    @staticmethod
    def _save_memory(conn: sqlite3.Connection, meter_id: str, memory: Memory) -> None:
        conn.execute(
            "UPDATE credit_meter SET memory = ? WHERE meter = ?",
            (memory.model_dump_json(), meter_id),
        )


def _priced(record: UsageRecord, tariff: Tariff, shares: dict[str, int]) -> UsageRecord:
    return UsageRecord.model_validate(
        {
            **record.model_dump(),
            "shares": shares,
            "tariff": tariff.id,
            "tariff_version": tariff.version,
        }
    )


def _month(tariff: Tariff, moment: datetime) -> str:
    return moment.astimezone(tariff.zone).strftime("%Y-%m")


def _energy_after_month_start(tariff: Tariff, record: UsageRecord) -> int:
    local_end = record.end.astimezone(tariff.zone)
    month_start = local_end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    span = (record.end - record.start).total_seconds()
    after = (record.end - month_start).total_seconds()
    return int(Fraction(record.energy) * Fraction(after) / Fraction(span)) if span else 0
