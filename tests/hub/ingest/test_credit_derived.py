"""A credit state follows usage only when the agent cannot work its balance out alone
(``hub.commands.baseline``): after the first usage, after something else moved the balance,
after a state the agent refused, and once the last one is older than the refresh interval;
never for the meter's own charges alone. Over a real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from hub.commands.baseline import StateDigests, digest
from hub.commands.chain import Chain, after_batch, after_state, derived_balance
from hub.commands.store import settle
from hub.control.rules import CustomerRules
from hub.control.state import set_credit_rules
from hub.db import read_tx, write_tx
from hub.ingest import IngestService
from hub.ingest.credit_report import Digest, MeterDigests, report, to_meter_credit
from hub.ingest.model import CreditInfo, Derived
from hub.ledger.topups import post_topup
from hub.rating.state import MeterState
from protocol.messages import CreditState, TokenSetup, validate
from protocol.tariff import Tariff
from tests.conftest import Broker
from tests.hub.ingest.helpers import balances, posted, publisher, records_for, table
from tests.hub.seed import DEFAULT_TARIFF, World, seed_world
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


def _params(engine: Engine, command_id: str) -> dict[str, Any]:
    c = table("commands")
    with read_tx(engine) as conn:
        payload = conn.execute(select(c.c.payload).where(c.c.id == command_id)).scalar_one()
    params: dict[str, Any] = json.loads(payload)["params"]
    return params


def _baseline(engine: Engine, meter: str) -> Any:
    b = table("credit_baselines")
    with read_tx(engine) as conn:
        return conn.execute(select(b).where(b.c.meter_id == meter)).first()


def _state_at(engine: Engine, meter: str, seq: int) -> Callable[[], bool]:
    return lambda: any(s["seq"] == seq for s in _states(engine, meter))


def _first_meter(engine: Engine, n: int) -> tuple[str, str, str, list[dict[str, Any]]]:
    """A seeded world's first meter, its gateway, its customer and its first ``n`` records."""
    world: World = seed_world(engine)
    meter, gateway = next(iter(world.meters.items()))
    return meter, gateway, world.customers[meter], records_for(meter, n)


def test_own_usage_sends_no_state_anything_else_does(
    engine: Engine, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    meter, gateway, customer, records = _first_meter(engine, 14)
    service = start_service(engine, credit_interval_s=0)
    with publisher(mosquitto.port) as pub:
        # the first usage: no baseline yet, the state goes out
        pub.usage(gateway, records[:5])
        wait_for(_state_at(engine, meter, 5))
        # the digest of a state as built is the one of the command that carried it
        params = _params(engine, _states(engine, meter)[0]["id"])
        state = validate(params, CreditState)
        assert StateDigests()(state) == digest(params) == _baseline(engine, meter).digest
        # the meter's own charges only: the agent works the balance out, nothing is sent
        pub.usage(gateway, records[5:10])
        wait_for(lambda: posted(engine) == 10)
        wait_for(lambda: service.counters["credit_derived"] >= 1)
        assert [s["seq"] for s in _states(engine, meter)] == [5]
        base = _baseline(engine, meter)
        assert json.loads(base.points)[-1] == [10, balances(engine)[customer]]
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


def test_a_derived_meter_crossing_a_threshold_is_still_evaluated(
    engine: Engine, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    """A meter whose agent works its balance out is reported as at rest (None) while it stays
    above its customer's low-credit thresholds, and in full to credit control (a Derived) in
    the batch that takes it to or below one: credit control prompts the customer then."""
    meter, gateway, customer, records = _first_meter(engine, 40)
    service = start_service(engine, credit_interval_s=0)
    with publisher(mosquitto.port) as pub:
        pub.usage(gateway, records[:5])
        wait_for(_state_at(engine, meter, 5))
        wait_for(lambda: _memory(engine, customer, meter) is not None)
        threshold = balances(engine)[customer] - 60  # a few records' charges below
        with write_tx(engine) as conn:
            set_credit_rules(conn, customer, CustomerRules(low_credit=(threshold,)))
        pub.usage(gateway, records[5:6])  # the rules changed: the state goes out
        wait_for(_state_at(engine, meter, 6))
        for n in range(6, 40):
            derived = service.counters["credit_derived"]
            pub.usage(gateway, records[n : n + 1])
            wait_for(_counted(service, "credit_derived", derived + 1))
            if balances(engine)[customer] <= threshold:
                break
            assert not (_memory(engine, customer, meter) or {}).get("prompted")
        else:
            raise AssertionError("the balance never reached the threshold")
        wait_for(lambda: (_memory(engine, customer, meter) or {}).get("prompted") == [threshold])
    assert [s["seq"] for s in _states(engine, meter)] == [5, 6]


def _counted(service: IngestService, name: str, n: int) -> Callable[[], bool]:
    return lambda: service.counters[name] == n


def _memory(engine: Engine, customer: str, meter: str) -> dict[str, Any] | None:
    """The meter's credit memory as credit control stored it in its customer's flags."""
    c = table("customers")
    with read_tx(engine) as conn:
        flags = conn.execute(select(c.c.flags).where(c.c.id == customer)).scalar_one()
    memory: dict[str, Any] | None = ((flags or {}).get("credit_memory") or {}).get(meter)
    return memory


def test_refresh_zero_sends_a_state_after_every_batch(
    engine: Engine, mosquitto: Broker, start_service: Callable[..., IngestService]
) -> None:
    meter, gateway, _customer, records = _first_meter(engine, 6)
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


NOW = datetime(2026, 12, 5, tzinfo=UTC)
# few distinct amounts, so that moves cancel out and match charges often
BATCH = st.tuples(st.just("batch"), st.lists(st.sampled_from([0, 100, 200]), min_size=1,
                                             max_size=3))  # fmt: skip
MOVE = st.tuples(st.just("move"), st.sampled_from([-200, -100, 100, 200]))
STATE = st.tuples(st.just("state"), st.integers(0, 4))  # built from a batch end this many back
LIVE = st.tuples(st.just("live"), st.just(0))  # built now (a top-up's, say)
LOST = st.tuples(st.just("lost"), st.just(0))  # the last state expired or was refused


@settings(max_examples=1500)
@given(st.lists(st.one_of(BATCH, MOVE, STATE, LIVE, LOST), min_size=4, max_size=24))
def test_a_state_is_left_out_only_when_the_agent_works_the_balance_out(
    ops: list[tuple[str, Any]],
) -> None:
    """The hub's usage, other balance moves and credit states (some built from batch ends a
    few batches back, as a lagging coordinator does; some lost on the way) in any order, with an
    agent that applies the newest state it receives and prices its own records: whenever a
    batch's step holds on a blessed chain (the hub leaves the state out), the agent's figure is
    the hub's balance."""
    balance, seq = 10_000, 0
    ends: list[tuple[int, int]] = []  # (seq, balance) at each batch end
    chain: Chain | None = None
    agent: tuple[int, int] | None = None  # (as_of_seq, balance) of the state it applied
    pending: tuple[str, tuple[int, int]] | None = None  # a state on its way
    charged: dict[int, int] = {}  # the agent's own charges
    for n, (kind, arg) in enumerate(ops):
        if kind == "lost":  # expired or refused: hub.commands.baseline.forget
            if pending is not None and chain is not None and chain.command_id == pending[0]:
                chain = None
            pending = None
            continue
        if pending is not None:  # delivered; the agent ignores a state older than its own
            if agent is None or pending[1][0] >= agent[0]:
                agent = pending[1]
            pending = None
        if kind == "batch":
            charges = [(seq + 1 + i, d) for i, d in enumerate(arg)]
            seq += len(arg)
            balance -= sum(arg)
            charged.update(charges)
            ends.append((seq, balance))
            chain, held = after_batch(chain, charges, seq, balance)
            if held and chain.digest:
                assert agent is not None
                own = sum(d for s, d in charged.items() if s > agent[0])
                assert agent[1] - own == balance
        elif kind == "move":
            balance += arg
        else:  # a state queued: built now, or from a batch end a few batches back
            back = min(arg, len(ends) - 1)
            point = ends[-1 - back] if kind == "state" and ends else (seq, balance)
            pending = (f"c{n}", point)
            chain = after_state(chain, *point, digest="d", command_id=f"c{n}", now=NOW)


def test_a_meters_digest_is_built_again_only_when_its_inputs_change() -> None:
    """``MeterDigests`` remembers each meter's digest with what it was built from: a batch that
    moved only the balance and the rating state reuses it; a change of anything else the state
    carries builds it again, to the digest a freshly built state has."""
    built: list[CreditState] = []

    def hasher(state: CreditState) -> str:
        built.append(state)
        return StateDigests()(state)

    tariff = Tariff.model_validate(DEFAULT_TARIFF)
    info = CreditInfo(meter_id="m-1", gateway_id="gw-1", command_key="", account_id="c-1",
                      balance=5_000, tariff=tariff, state=MeterState(seq=3), flags=None,
                      protected=False)  # fmt: skip
    memo = MeterDigests()
    first = memo.of(info, hasher)
    assert first.digest == StateDigests()(to_meter_credit(info).state) and len(built) == 1
    moved = replace(info, balance=4_200, state=MeterState(seq=7))
    assert memo.of(moved, hasher) == first and len(built) == 1
    other_tariff = Tariff.model_validate({**DEFAULT_TARIFF, "components": [
        {"provider": "gen", "per_kwh": "0.2"}]})  # fmt: skip
    changes: list[dict[str, Any]] = [
        {"flags": {"credit_rules": {"low_credit": [500]}}},
        {"protected": True},
        {"alternate_available": 900},
        {"tokens": TokenSetup(sealed="ab" * 20, settled=(1, 2))},
        {"tariff": other_tariff},
    ]
    for n, change in enumerate(changes, start=2):
        changed = replace(moved, **change)
        got = memo.of(changed, hasher)
        assert len(built) == n, change
        assert got.digest == StateDigests()(to_meter_credit(changed).state) != first.digest
        assert memo.of(replace(changed, balance=1), hasher) == got and len(built) == n


def test_a_derived_meter_at_rest_is_reported_as_none() -> None:
    """``report`` leaves a derived meter out (None) only when credit control would skip it too
    (``hub.control.rules.at_rest`` on its stored memory, its customer's rules and its balance);
    the rest floor comes from the memo with the digest, so a change of flags is seen."""
    tariff = Tariff.model_validate(DEFAULT_TARIFF)
    quiet = {"credit_memory": {"m-1": {"relay": "connected"}},
             "credit_rules": {"low_credit": [500, 200]}}  # fmt: skip
    info = CreditInfo(meter_id="m-1", gateway_id="gw-1", command_key="", account_id="c-1",
                      balance=5_000, tariff=tariff, state=MeterState(seq=3), flags=quiet,
                      protected=False)  # fmt: skip
    memo, hasher = MeterDigests(), StateDigests()

    def digest_of(i: CreditInfo) -> Digest:
        return memo.of(i, hasher)

    told = Chain(points=((3, 5_000),), digest=digest_of(info).digest, command_id="c-1",
                 sent_at=NOW)  # fmt: skip
    refresh = timedelta(hours=6)

    def reported(**change: Any) -> object:
        return report(replace(info, **change), told, refresh, digest_of, NOW)

    assert digest_of(info).rest_floor == 500
    assert reported() is None
    assert reported(balance=501) is None
    for change in ({"balance": 500}, {"balance": -10},
                   {"flags": {**quiet, "credit_memory": {"m-1": {"prompted": [500]}}}},
                   {"flags": {**quiet, "credit_memory": {}}}):  # fmt: skip
        got = reported(**change)
        changed = replace(info, **change)
        assert isinstance(got, Derived), change
        assert got == Derived("m-1", changed.balance, changed.flags, False)
    # a state not left to the agent is reported in full, at rest or not
    assert isinstance(reported(tariff=Tariff.model_validate({**DEFAULT_TARIFF, "components": [
        {"provider": "gen", "per_kwh": "0.2"}]})), CreditInfo)  # fmt: skip
    assert report(info, told, refresh, digest_of, NOW + refresh) == info
