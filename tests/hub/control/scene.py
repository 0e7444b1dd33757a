"""A customer with one meter on a real SQLite ledger, driven like ingest and the API drive it."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from hub import ledger
from hub.control.engine import CreditControl
from hub.control.rules import split_rules
from hub.db import read_tx, run_tx
from hub.events import event_json, query_events
from hub.ledger import UsagePosting
from hub.ledger.sql import accounts, customers, entries, lines, meters
from hub.models import AccountKind, Gateway, Meter, TariffVersion
from hub.models import Tariff as TariffRow
from protocol.signing import new_key, verify
from protocol.tariff import Tariff
from tests.hub.seed import DEFAULT_TARIFF, EPOCH, add_provider
from tests.support import wait_for

MONDAY = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # a Monday


class Clock:
    """The injected clock: tests move it, nobody sleeps."""

    def __init__(self, now: datetime = MONDAY) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    def set(self, now: datetime) -> None:
        self.now = now


@dataclass
class Scene:
    engine: Engine
    control: CreditControl
    meter: str
    customer: str
    gateway: str
    key: str
    seq: int = 0
    register: int = 1000
    topups: int = 0
    sent: list[tuple[str, bytes]] = field(default_factory=list)

    # -- driving ---------------------------------------------------------------------------

    def use(self, amount: int) -> list[Any]:
        """Usage worth ``amount`` posted (as ingest does: never refused), then the hook."""
        self.seq += 1
        start, self.register = self.register, self.register + 100
        charge = [(self.customer, -amount), ("provider:gen", amount)]
        posting = UsagePosting(self.meter, self.seq, start, self.register, charge, "USD")
        result = run_tx(self.engine, lambda s: ledger.post_usage_batch(s, [posting]))
        assert not result.rejected, result.rejected
        return self.control.after_postings([self.meter])

    def topup(self, amount: int, account: str | None = None) -> ledger.TopupResult:
        """A top-up as the API posts it, then the API's after-commit hook."""
        self.topups += 1
        target = account or self.customer
        key = f"t{self.topups}"
        result = run_tx(
            self.engine, lambda s: ledger.post_topup(s, target, amount, idempotency_key=key)
        )
        self.control.after_topup(target, result.entry_id)
        return result

    # -- reading ---------------------------------------------------------------------------

    def balance(self, account: str | None = None) -> int:
        return self.account(account or self.customer)[0]

    def floor(self, account: str | None = None) -> int | None:
        return self.account(account or self.customer)[1]

    def account(self, account_id: str) -> tuple[int, int | None]:
        with read_tx(self.engine) as conn:
            row = conn.execute(select(accounts.c.balance, accounts.c.floor)
                               .where(accounts.c.id == account_id)).one()  # fmt: skip
        return int(row.balance), row.floor

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with Session(self.engine) as session:
            found = query_events(session, kind=kind, limit=1000)
            return [event_json(e) for e in found]

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]

    def entries(self, kind: str) -> list[tuple[int, dict[str, int], dict[str, Any]]]:
        """(entry id, {account: amount}, metadata) of every entry of ``kind``."""
        with read_tx(self.engine) as conn:
            stmt = select(entries.c.id, entries.c["metadata"]).where(entries.c.kind == kind)
            rows = conn.execute(stmt.order_by(entries.c.id)).all()
            out = []
            for row in rows:
                got = conn.execute(select(lines.c.account_id, lines.c.amount)
                                   .where(lines.c.entry_id == row.id)).all()  # fmt: skip
                out.append((row.id, {a: int(x) for a, x in got}, row.metadata or {}))
        return out

    def invariants(self) -> dict[str, Any]:
        with read_tx(self.engine) as conn:
            report = ledger.check_invariants(conn)
        return {k: v["detail"] for k, v in report["checks"].items() if not v["ok"]}

    def commands(self, *actions: str, at_least: int = 0) -> list[dict[str, Any]]:
        """Commands received from the broker on the gateway's topic (credit states left out
        unless asked for), each checked to carry the gateway's signature; waits until there
        are ``at_least`` of them."""
        wanted = set(actions) or {"disconnect", "reconnect", "prompt"}

        def received() -> list[dict[str, Any]]:
            out = []
            for _topic, payload in list(self.sent):
                command = json.loads(payload)
                assert verify(command, self.key), "a command the agent would refuse"
                if command["meter"] == self.meter and command["action"] in wanted:
                    out.append(command)
            return out

        if at_least:
            wait_for(lambda: len(received()) >= at_least, timeout=10)
        return received()


def make_scene(
    engine: Engine,
    control: CreditControl,
    *,
    balance: int = 1000,
    rules: dict[str, Any] | None = None,
    protected: bool = False,
    alternate: tuple[int, int | None] | None = None,
    timezone: str = "UTC",
) -> Scene:
    """One customer, one meter, ``balance`` in credit; ``alternate`` = (balance, floor) of an
    alternate account to attach."""
    tag = uuid.uuid4().hex[:6]
    customer, meter, gateway, key = f"c-{tag}", f"m-{tag}", f"gw-{tag}", new_key()
    proto, policy = split_rules(rules or {})

    def work(session: Session) -> None:
        conn = session.connection()
        _tariff(session)
        ledger.create_customer(session, customer, customer, "USD")
        session.add(Gateway(id=gateway, command_key=key, mqtt_username=gateway,
                            mqtt_password_hash="-"))  # fmt: skip
        session.flush()
        session.add(Meter(id=meter, gateway_id=gateway, customer_id=customer, tariff_id="std"))
        session.flush()
        alt = None
        if alternate is not None:
            alt = f"alt-{tag}"
            ledger.open_account(conn, alt, name="alternate", kind=AccountKind.ALTERNATE,
                                currency="USD", floor=alternate[1])  # fmt: skip
            if alternate[0]:
                ledger.post_topup(conn, alt, alternate[0], idempotency_key="alt")
        flags = {"credit_rules": proto, "credit_policy": policy}
        values = {"flags": flags, "protected": protected, "alternate_account_id": alt}
        conn.execute(update(customers).where(customers.c.id == customer).values(**values))
        conn.execute(update(meters).where(meters.c.id == meter).values(timezone=timezone))
        if balance:
            ledger.post_topup(conn, customer, balance, idempotency_key="opening")

    run_tx(engine, work)
    return Scene(engine, control, meter, customer, gateway, key)


def _tariff(session: Session) -> None:
    """The seed world's providers and flat tariff, once per database."""
    if session.get(TariffRow, "std") is not None:
        return
    doc = Tariff.model_validate(DEFAULT_TARIFF)
    for provider in doc.providers:
        add_provider(session, provider, doc.currency)
    session.add(TariffRow(id=doc.id, currency=doc.currency, name=doc.id))
    session.flush()
    session.add(TariffVersion(tariff_id=doc.id, version=doc.version, valid_from=EPOCH,
                              document=doc.model_dump_json()))  # fmt: skip


def alternate_of(scene: Scene) -> str:
    with read_tx(scene.engine) as conn:
        return str(conn.execute(select(customers.c.alternate_account_id)
                                .where(customers.c.id == scene.customer)).scalar_one())  # fmt: skip
