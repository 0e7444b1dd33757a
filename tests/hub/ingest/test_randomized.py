"""A randomized run through the broker on SQLite and PostgreSQL: shared meters, a sponsor's
split, a generation mix, duplicates, reordering and garbage. Every ledger invariant holds, the
energy posted equals the energy sent, and each meter's charges match its tariff."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, update

from hub import ledger
from hub.db import read_tx, write_tx
from hub.ingest import IngestService
from hub.models import AccountKind
from tests.conftest import Broker
from tests.hub.ingest.helpers import T0, count, posted, publisher, records_for, table
from tests.hub.seed import seed_world
from tests.support import wait_for


def _configure(engine: Engine) -> None:
    """gw-0-m1 shared 3:1 with a non-contributing third user; gw-1-m0 split with a sponsor;
    generation for every meter comes from two generators in a mix that changes at noon."""
    with write_tx(engine) as conn:
        ledger.open_account(conn, "sponsor", name="Sponsor", kind=AccountKind.SPONSOR,
                            currency="USD", floor=None)  # fmt: skip
        ledger.create_customer(conn, "lodger", "Lodger", "USD")
        conn.execute(insert(table("meter_customers")), [
            {"meter_id": "gw-0-m1", "customer_id": "c-0-1", "weight": 3, "contributes": True},
            {"meter_id": "gw-0-m1", "customer_id": "c-1-0", "weight": 1, "contributes": True},
            {"meter_id": "gw-0-m1", "customer_id": "lodger", "weight": 5, "contributes": False},
        ])  # fmt: skip
        meters = table("meters")
        conn.execute(update(meters).where(meters.c.id == "gw-1-m0")
                     .values(split_rule={"accounts": {"sponsor": 1, "c-1-0": 2}}))  # fmt: skip
        conn.execute(insert(table("generation_mix")), [
            {"meter_id": None, "pool": "gen", "start": T0, "end": T0 + timedelta(hours=12),
             "measured": {"gen-solar": 3000, "gen-hydro": 1000}},
            {"meter_id": None, "pool": "gen", "start": T0 + timedelta(hours=12), "end": None,
             "measured": {"gen-solar": 1, "gen-hydro": 1}},
        ])  # fmt: skip


def test_randomized_run_keeps_every_invariant(
    engine: Engine, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    rng = random.Random(2026)
    world = seed_world(engine, gateways=2, meters_per_gateway=2,
                       extra_providers=("gen-solar", "gen-hydro"))  # fmt: skip
    _configure(engine)
    stream: list[tuple[str, dict[str, Any]]] = []
    for meter, gateway in world.meters.items():
        stream += [(gateway, r) for r in records_for(meter, 60, rng=rng, step_s=1800)]
    sent_energy = sum(r["import_end"] - r["import_start"] for _, r in stream)
    messages: list[tuple[str, bytes]] = []
    for gateway, record in stream:
        messages.append((f"smsa/v1/gw/{gateway}/usage", _usage([record])))
    for gateway, record in rng.sample(stream, 40):  # duplicates
        messages.append((f"smsa/v1/gw/{gateway}/usage", _usage([record])))
    garbage = [b"", b"null", b'{"v": 1, "records": []}', b'{"v":1,"records":[{"meter":"x"}]}']
    messages += [("smsa/v1/gw/gw-0/usage", g) for g in garbage]
    # mostly in order, with local shuffles (what a replaying outbox and QoS 1 can do)
    for i in range(0, len(messages), 8):
        chunk = messages[i : i + 8]
        rng.shuffle(chunk)
        messages[i : i + 8] = chunk
    service = start_service(engine, batch_size=25)
    before = _balances(engine)
    with publisher(mosquitto.port) as pub:
        for name, payload in messages:
            pub.send(name, payload)
        wait_for(lambda: posted(engine) == len(stream), timeout=60)
        wait_for(lambda: service.counters["quarantined"] == len(garbage))
    with read_tx(engine) as conn:
        report = ledger.check_invariants(conn)
        pu = table("posted_usage")
        energy = conn.execute(select(func.sum(pu.c.import_end - pu.c.import_start))).scalar()
    assert report["ok"], json.dumps(report, indent=1, default=str)
    assert energy == sent_energy
    assert count(engine, "usage_pending") == 0
    after = _balances(engine)
    delta = {a: after[a] - before.get(a, 0) for a in after}
    # claim 13: a user who does not contribute pays nothing; claim 10: the sponsor pays part
    assert delta["lodger"] == 0
    assert delta["sponsor"] < 0 and delta["c-1-0"] < 0
    # claim 15: the pooled generation provider's share went to the generators
    assert delta["provider:gen"] == 0
    assert delta["provider:gen-solar"] > delta["provider:gen-hydro"] > 0
    assert sum(delta.values()) == 0


def _usage(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"v": 1, "records": records}).encode()


def _balances(engine: Engine) -> dict[str, int]:
    a = table("accounts")
    with read_tx(engine) as conn:
        return {r.id: r.balance for r in conn.execute(select(a.c.id, a.c.balance))}
