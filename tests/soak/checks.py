"""What a soak run must prove at its end, each check a list of violations (empty: it holds).

Read from the hub's API (``GET /ledger/check``), the hub's SQLite file (read-only) and the
simulators' control block (exact energy, relay), never from the agent: the simulator is the
physical truth, the hub's ledger is what was charged.
"""

import json
import sqlite3
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

from tests.soak.traffic import Sent

REGISTER_STEP_WH = 10  # the DDS238 import register counts 1/100 kWh
OPEN = ("queued", "sent")
ENDED = ("applied", "rejected", "expired", "superseded")


@dataclass
class Figures:
    records: int = 0
    energy_wh: int = 0
    topups: int = 0  # minor units
    usage: int = 0
    providers: int = 0
    max_debit_error: Fraction = Fraction(0)
    commands: dict[str, int] = field(default_factory=dict)


def connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)


def register_wh(energy_wh: int) -> int:
    """What the meter's register shows for an exact energy (rounded down to its step)."""
    return energy_wh - energy_wh % REGISTER_STEP_WH


def ledger(check: dict[str, Any]) -> list[str]:
    return [
        f"ledger check {name}: {c.get('detail')}"
        for name, c in check["checks"].items()
        if not c["ok"]
    ]


def posted(conn: sqlite3.Connection) -> dict[str, tuple[int, int, int, int, int, int]]:
    """Per meter: (records, min seq, max seq, first register, last register, Wh posted)."""
    rows = conn.execute(
        "SELECT meter_id, COUNT(*), MIN(seq), MAX(seq), MIN(import_start), MAX(import_end),"
        " SUM(import_end - import_start) FROM posted_usage GROUP BY meter_id"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def energy(conn: sqlite3.Connection, truth: dict[str, int], figures: Figures) -> list[str]:
    """Each meter's posted energy is its simulator's register span, exactly: the register
    started at 0 (the simulators were paused until every meter had reported). Gaps in seq are
    allowed (an outbox past its bound merges intervals); the spans must still join."""
    out = []
    seen = posted(conn)
    for meter, exact in sorted(truth.items()):
        register = register_wh(exact)
        n, _, _, start, end, wh = seen.get(meter, (0, 0, 0, 0, 0, 0))
        figures.records += n
        figures.energy_wh += wh
        if wh != register or start != 0 or end != register:
            how = "lost" if wh < register else "charged twice"
            out.append(
                f"{meter}: register 0..{register} Wh, posted {wh} Wh over {start}..{end} "
                f"({how} {abs(register - wh)} Wh)"
            )
    return out


def _versions(conn: sqlite3.Connection) -> tuple[list[datetime], list[Fraction]]:
    """The tariff's versions: start instants and the total price per Wh in minor units."""
    starts, rates = [], []
    sql = "SELECT valid_from, document FROM tariff_versions ORDER BY valid_from, version"
    rows = conn.execute(sql)
    for valid_from, document in rows:
        doc = json.loads(document)
        per_kwh = sum(Decimal(c.get("per_kwh") or 0) for c in doc["components"])
        starts.append(datetime.fromisoformat(valid_from))
        rates.append(Fraction(per_kwh) * 100 / 1000)  # minor units per Wh
    return starts, rates


def debits(conn: sqlite3.Connection, customers: dict[str, str], figures: Figures) -> list[str]:
    """Each customer's usage debit is its energy times the tariff version in force at each
    interval's end: within one minor unit per interval (the soak's bar), and in fact within one
    minor unit in all (invariant 5: the rounding remainder is carried), which is what is
    checked. An interval too small to cost a whole minor unit has no customer line; its energy
    still counts."""
    starts, rates = _versions(conn)
    rows = conn.execute(
        "SELECT u.meter_id, u.interval_end, u.import_end - u.import_start,"
        " COALESCE(SUM(l.amount), 0) FROM posted_usage u JOIN meters m ON m.id = u.meter_id"
        " LEFT JOIN journal_lines l ON l.entry_id = u.entry_id AND l.account_id = m.customer_id"
        " GROUP BY u.meter_id, u.seq"
    )
    exact: dict[str, Fraction] = defaultdict(Fraction)
    charged: dict[str, int] = defaultdict(int)
    intervals: dict[str, int] = defaultdict(int)
    for meter, end, wh, amount in rows:
        version = max(0, bisect_right(starts, datetime.fromisoformat(end)) - 1)
        exact[meter] += wh * rates[version]
        charged[meter] -= amount
        intervals[meter] += 1
    out = []
    for meter in sorted(customers):
        error = abs(charged[meter] - exact[meter])
        figures.max_debit_error = max(figures.max_debit_error, error)
        if error > 1:
            out.append(
                f"{customers[meter]} ({meter}): charged {charged[meter]}, energy x tariff "
                f"{float(exact[meter]):.2f} over {intervals[meter]} intervals"
            )
    return out


def money(
    conn: sqlite3.Connection, sent: Sent, initial: dict[str, int], figures: Figures
) -> list[str]:
    """Every top-up the harness made (initial ones and the schedule's) was posted exactly once,
    a replay moved nothing; and the totals for the summary."""
    want: dict[str, int] = defaultdict(int, initial)
    for account, cents in sent.topups.values():
        want[account] += cents
    got: dict[str, int] = defaultdict(int)
    rows = conn.execute(
        "SELECT l.account_id, l.amount FROM journal_entries e JOIN journal_lines l"
        " ON l.entry_id = e.id WHERE e.kind = 'topup' AND l.amount > 0"
    )
    for account, amount in rows:
        got[account] += amount
    figures.topups = sum(got.values())
    figures.usage = -sum(
        a
        for (a,) in conn.execute(
            "SELECT l.amount FROM journal_entries e JOIN journal_lines l ON l.entry_id = e.id"
            " WHERE e.kind = 'usage' AND l.amount < 0"
        )
    )
    figures.providers = sum(
        b for (b,) in conn.execute("SELECT balance FROM accounts WHERE id LIKE 'provider:%'")
    )
    return [
        f"{a}: top-ups made {want[a]}, posted {got[a]}"
        for a in sorted(set(want) | set(got))
        if want[a] != got[a]
    ]


def commands(conn: sqlite3.Connection, figures: Figures) -> list[str]:
    rows = conn.execute("SELECT status, COUNT(*) FROM commands GROUP BY status").fetchall()
    figures.commands = {status: n for status, n in rows}
    return [f"{n} commands still {status}" for status, n in rows if status not in ENDED]


def agent_figures(
    conn: sqlite3.Connection, agent_dbs: list[Path], customers: dict[str, str]
) -> list[str]:
    """Every agent's local balance is its meter's account's balance at the hub: after usage
    the hub sends a state only when the agent cannot work the balance out alone
    (``hub.commands.baseline``), so nothing lost, reordered or priced otherwise on the way may
    leave the agent's own figure off (read from the agents' files, read-only)."""
    balance = dict(conn.execute("SELECT id, balance FROM accounts").fetchall())
    out = []
    for path in agent_dbs:
        agent = connect(path)
        try:
            rows = agent.execute(
                "SELECT meter, balance FROM credit_meter WHERE state IS NOT NULL"
            ).fetchall()
        finally:
            agent.close()
        for meter, local in rows:
            hub = balance.get(customers.get(meter, ""))
            if local != hub:
                out.append(f"{meter}: the agent's balance is {local}, the hub's {hub}")
    return out


def relays(
    conn: sqlite3.Connection,
    relay_on: dict[str, bool],
    *,
    customers: dict[str, str],
    protected: set[str],
    sent: Sent,
    reconnect_above: int,
) -> list[str]:
    """No relay contradicts the credit rules, given the last operator command that was applied:
    an operator cut stays cut; otherwise a protected customer is supplied, a cut-off meter's
    customer is not above the reconnect level, and a supplied one is not exhausted (below 0)
    unless an operator reconnected it."""
    status = dict(conn.execute("SELECT id, status FROM commands").fetchall())
    created = dict(conn.execute("SELECT id, created_at FROM commands").fetchall())
    last_op: dict[str, tuple[str, str]] = {}
    for meter, action, cid in sent.commands:
        if status.get(cid) == "applied" and created[cid] >= last_op.get(meter, ("", ""))[1]:
            last_op[meter] = (action, created[cid])
    balance = dict(conn.execute("SELECT id, balance FROM accounts").fetchall())
    out = []
    for meter, on in sorted(relay_on.items()):
        customer = customers[meter]
        op = last_op.get(meter, ("", ""))[0]
        b = balance[customer]
        relay = "on" if on else "off"
        what = f"{meter}: relay {relay}, balance {b}, last operator command {op or 'none'}"
        if op == "disconnect":
            if on:
                out.append(what)
        elif customer in protected:
            if not on:
                out.append(what + " (protected)")
        elif not on and b > max(reconnect_above, 0):
            out.append(what + " (should be reconnected)")
        elif on and b < 0 and op != "reconnect":
            out.append(what + " (should be cut off)")
    return out
