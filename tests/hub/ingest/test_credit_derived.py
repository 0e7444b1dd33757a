"""A credit state follows usage only when the agent cannot work its balance out alone
(``hub.commands.baseline``): after the first usage, after something else moved the balance,
after a state the agent refused, and once the last one is older than the refresh interval;
never for the meter's own charges alone. Over a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from hub.commands.store import settle
from hub.control.derivation import derived_balance
from hub.db import read_tx, write_tx
from hub.ingest import IngestService
from hub.ledger.topups import post_topup
from tests.conftest import Broker
from tests.hub.ingest.helpers import balances, posted, publisher, records_for, table
from tests.hub.seed import World, seed_world
from tests.support import wait_for


def _states(engine: Engine, meter: str) -> list[dict[str, Any]]:
    """The meter's credit commands, oldest first: id, status and the state's seq and balance."""
    c = table("commands")
    with read_tx(engine) as conn:
        rows = conn.execute(
            select(c.c.id, c.c.status, c.c.payload)
            .where(c.c.meter_id == meter, c.c.action == "credit")
            .order_by(c.c.created_at, c.c.id)
        ).all()  # fmt: skip
    out = []
    for row in rows:
        params = json.loads(row.payload)["params"]
        out.append({"id": row.id, "status": row.status, "seq": params["as_of_seq"],
                    "balance": params["balance"]})  # fmt: skip
    return out


def _baseline(engine: Engine, meter: str) -> Any:
    b = table("credit_baselines")
    with read_tx(engine) as conn:
        return conn.execute(select(b).where(b.c.meter_id == meter)).first()


def _state_at(engine: Engine, meter: str, seq: int) -> Callable[[], bool]:
    return lambda: any(s["seq"] == seq for s in _states(engine, meter))


def test_own_usage_sends_no_state_anything_else_does(
    engine: Engine, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    world: World = seed_world(engine)
    meter, gateway = next(iter(world.meters.items()))
    customer = world.customers[meter]
    records = records_for(meter, 14)
    service = start_service(engine, credit_interval_s=0)
    with publisher(mosquitto.port) as pub:
        # the first usage: no baseline yet, the state goes out
        pub.usage(gateway, records[:5])
        wait_for(_state_at(engine, meter, 5))
        # the meter's own charges only: the agent works the balance out, nothing is sent
        pub.usage(gateway, records[5:10])
        wait_for(lambda: posted(engine) == 10)
        wait_for(lambda: service.counters["credit_derived"] >= 1)
        assert [s["seq"] for s in _states(engine, meter)] == [5]
        base = _baseline(engine, meter)
        assert (base.seq, base.expected) == (10, balances(engine)[customer])
        # money moved by something that sent no state (a top-up straight into the ledger):
        # the next usage is followed by a state with the balance that includes it
        with write_tx(engine) as conn:
            post_topup(conn, customer, 1_000, idempotency_key="beside-usage")
        pub.usage(gateway, records[10:12])
        wait_for(_state_at(engine, meter, 12))
        assert _states(engine, meter)[-1]["balance"] == balances(engine)[customer]
        # the agent refused that state: it never had it, so the next usage sends one again
        with write_tx(engine) as conn:
            assert settle(conn, gateway, _states(engine, meter)[-1]["id"], applied=False,
                          detail="refused in a test", now=base.sent_at)  # fmt: skip
        assert _baseline(engine, meter) is None
        pub.usage(gateway, records[12:13])
        wait_for(_state_at(engine, meter, 13))
        pub.usage(gateway, records[13:14])
        wait_for(lambda: posted(engine) == 14)
        wait_for(lambda: service.counters["credit_derived"] >= 2)
    assert [s["seq"] for s in _states(engine, meter)] == [5, 12, 13]


def test_refresh_zero_sends_a_state_after_every_batch(
    engine: Engine, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    world: World = seed_world(engine)
    meter, gateway = next(iter(world.meters.items()))
    records = records_for(meter, 6)
    service = start_service(engine, credit_interval_s=0, credit_refresh_s=0)
    with publisher(mosquitto.port) as pub:
        for first in range(0, 6, 2):
            pub.usage(gateway, records[first : first + 2])
            wait_for(_state_at(engine, meter, first + 2))
    assert service.counters["credit_derived"] == 0


@given(
    seq=st.integers(0, 10**6),
    expected=st.integers(-(10**9), 10**9),
    debits=st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=20),
    shift=st.integers(-3, 3),
)
def test_derived_balance_only_for_the_records_right_after_the_baseline(
    seq: int, expected: int, debits: list[int], shift: int
) -> None:
    charges = [(seq + 1 + shift + i, d) for i, d in enumerate(debits)]
    last = charges[-1][0]
    got = derived_balance(seq, expected, list(reversed(charges)), last)
    assert got == (expected - sum(debits) if shift == 0 else None)
    # a record refused after the last one posted (the rating state moved past it): unknown
    assert derived_balance(seq, expected, charges, last + 1) is None
    # one missing in the middle: unknown
    if len(charges) > 2:
        assert derived_balance(seq, expected, charges[:1] + charges[2:], last) is None
