"""The credit book: pricing, local balance against the hub's state, offline decisions."""

import tempfile
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from math import floor
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.credit import CreditBook
from protocol.messages import CreditRules, CreditState, UsageRecord
from protocol.rating import price_interval
from protocol.tariff import Tariff

T0 = datetime(2026, 11, 10, 6, 0, tzinfo=UTC)
# Hypothesis examples open a fresh book each: on tmpfs the per-commit fsync costs nothing.
FAST_TMP = "/dev/shm" if Path("/dev/shm").is_dir() else None
FLAT = Tariff.model_validate(
    {
        "id": "flat",
        "version": 3,
        "currency": "USD",
        "components": [
            {"provider": "gen", "per_kwh": "0.1234"},
            {"provider": "dist", "per_kwh": "0.0517"},
            {"provider": "gov", "tax_rate": "0.16"},
        ],
    }
)
BLOCKS = Tariff.model_validate(
    {
        "id": "ibt",
        "currency": "KES",
        "timezone": "Africa/Nairobi",
        "components": [
            {
                "provider": "retail",
                "blocks": [{"up_to": "1", "price": "10.33"}, {"price": "21.7"}],
            },
            {"provider": "levy", "per_kwh": "0.91"},
        ],
    }
)


def chain(meter: str, energies: list[int], first_seq: int = 1) -> list[UsageRecord]:
    """Contiguous 10-second records of ``meter`` with the given energies."""
    out, register = [], 5000
    for n, wh in enumerate(energies):
        start = T0 + timedelta(seconds=10 * n)
        out.append(
            UsageRecord(
                meter=meter,
                seq=first_seq + n,
                start=start,
                end=start + timedelta(seconds=10),
                import_start=register,
                import_end=register + wh,
            )
        )
        register += wh
    return out


def state(balance: int, as_of: int = 0, tariff: Tariff = FLAT, **rules: object) -> CreditState:
    return CreditState(
        balance=balance, as_of_seq=as_of, tariff=tariff, rules=CreditRules.model_validate(rules)
    )


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([FLAT, BLOCKS]),
    st.integers(-10_000, 10**6),
    st.lists(st.integers(0, 700), min_size=1, max_size=40),
)
def test_balance_and_shares_match_the_exact_cost(
    tariff: Tariff, balance: int, energies: list[int]
) -> None:
    with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
        book = CreditBook(Path(tmp) / "c.db")
        book.apply("m1", state(balance, tariff=tariff))
        priced = [book.price(r) for r in chain("m1", energies)]
        local = book.balance("m1")
        book.close()
    total = sum(sum(r.shares.values()) for r in priced)
    assert local == balance - total
    assert all(v >= 0 for r in priced for v in r.shares.values())
    assert all((r.tariff, r.tariff_version) == (tariff.id, tariff.version) for r in priced)
    exact = sum(
        price_interval(tariff, priced[0].start, priced[-1].end, sum(energies)).values(),
        Fraction(0),
    )
    assert total == floor(exact)  # the carried remainder never loses or adds a minor unit


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6), st.lists(st.integers(0, 900), min_size=2, max_size=30), st.data())
def test_local_balance_is_state_minus_later_charges(
    balance: int, energies: list[int], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(dir=FAST_TMP) as tmp:
        book = CreditBook(Path(tmp) / "c.db")
        book.apply("m1", state(balance))
        priced = [book.price(r) for r in chain("m1", energies)]
        charges = {r.seq: sum(r.shares.values()) for r in priced}
        assert book.balance("m1") == balance - sum(charges.values())
        cut = data.draw(st.integers(0, len(energies)), label="as_of_seq")
        topped = data.draw(st.integers(0, 10**6), label="hub balance")
        assert book.apply("m1", state(topped, as_of=cut))
        assert book.balance("m1") == topped - sum(c for s, c in charges.items() if s > cut)
        # an older state changes nothing; a restart keeps everything
        if cut > 0:
            assert not book.apply("m1", state(0, as_of=cut - 1))
        book.close()
        reopened = CreditBook(Path(tmp) / "c.db")
        assert reopened.balance("m1") == topped - sum(c for s, c in charges.items() if s > cut)
        reopened.close()


def test_pricing_twice_charges_once(tmp_path: Path) -> None:
    book = CreditBook(tmp_path / "c.db")
    book.apply("m1", state(10_000))
    rec = chain("m1", [400])[0]
    first = book.price(rec)
    again = book.price(rec)
    assert first == again and sum(first.shares.values()) > 0
    assert book.balance("m1") == 10_000 - sum(first.shares.values())
    book.close()


def test_a_meter_without_credit_state_is_not_priced_or_cut(tmp_path: Path) -> None:
    book = CreditBook(tmp_path / "c.db")
    rec = chain("m9", [100])[0]
    assert book.price(rec) == rec and rec.shares == {}
    assert book.balance("m9") is None
    assert book.decide("m9", T0).action == "none"
    book.close()


def test_hub_carry_is_used_until_the_agent_prices_its_own(tmp_path: Path) -> None:
    book = CreditBook(tmp_path / "c.db")
    carried = CreditState(balance=1000, as_of_seq=0, tariff=FLAT, carry={"gen": "9/10"})
    book.apply("m1", carried)
    # 10 Wh cost about 0.2 cents: only the hub's carried 0.9 cents makes a whole cent due
    rec = book.price(chain("m1", [10])[0])
    exact = sum(price_interval(FLAT, rec.start, rec.end, 10).values(), Fraction(0))
    assert exact < 1 and sum(rec.shares.values()) == 1 == floor(Fraction(9, 10) + exact)
    book.close()


def test_blocks_count_month_to_date_and_reset_each_month(tmp_path: Path) -> None:
    book = CreditBook(tmp_path / "c.db")
    book.apply("m1", state(10**7, tariff=BLOCKS))
    first = book.price(chain("m1", [1000])[0])  # the whole first block (1 kWh)
    second = book.price(chain("m1", [0, 1000])[1])  # all in the second block
    assert sum(second.shares.values()) > sum(first.shares.values())
    next_month = chain("m1", [1000], first_seq=3)[0]
    december = datetime(2026, 12, 5, tzinfo=UTC)
    shifted = next_month.model_copy(
        update={"start": december, "end": december + timedelta(minutes=1)}
    )
    third = book.price(shifted)
    assert abs(sum(third.shares.values()) - sum(first.shares.values())) <= 1
    book.close()


def test_offline_cut_off_and_reconnect_after_a_top_up(tmp_path: Path) -> None:
    book = CreditBook(tmp_path / "c.db")
    book.apply("m1", state(100, low_credit=[50], grace_s=60, reconnect_above=200))
    records = chain("m1", [1000] * 10)
    now = T0
    seen = []
    for rec in records:
        book.price(rec)
        now += timedelta(seconds=30)
        d = book.decide("m1", now)
        seen.append((d.action, d.rule))
    assert ("prompt", "low_credit") in seen and ("prompt", "grace") in seen
    assert seen.count(("disconnect", "exhausted")) == 1
    assert seen.index(("prompt", "grace")) < seen.index(("disconnect", "exhausted"))
    assert book.relay("m1") == "disconnected"
    assert book.decide("m1", now).action == "none"
    # the hub's state after a top-up: balance as of the last record the hub has
    book.apply("m1", state(5000, as_of=10, low_credit=[50], grace_s=60, reconnect_above=200))
    d = book.decide("m1", now + timedelta(seconds=1))
    assert (d.action, d.rule) == ("reconnect", "reconnect")
    assert book.relay("m1") == "connected"
    book.close()


def test_hub_relay_commands_are_not_overruled_locally(tmp_path: Path) -> None:
    book = CreditBook(tmp_path / "c.db")
    book.apply("m1", state(10_000))
    book.set_relay("m1", "disconnected")
    assert book.decide("m1", T0).action == "none"  # no automatic reconnect
    book.apply("m1", state(-50))
    book.set_relay("m1", "connected")
    assert book.relay("m1") == "connected"
    assert book.decide("m1", T0).rule == "hold"  # no automatic cut-off either
    book.apply("m1", state(-60))  # until the hub sends a new credit state
    assert book.decide("m1", T0 + timedelta(seconds=1)).action == "disconnect"
    book.close()


def test_a_state_decided_before_the_hubs_reconnect_does_not_undo_it(tmp_path: Path) -> None:
    """The demo's flap: the hub cut a meter, then a top-up made it send a reconnect and a new
    state; a state from before the top-up, delivered after the reconnect, must not cut again."""
    book = CreditBook(tmp_path / "c.db")
    book.apply("m1", state(-50), T0)
    book.set_relay("m1", "disconnected")
    reconnected = T0 + timedelta(seconds=5)
    book.set_relay("m1", "connected", since=reconnected)
    book.apply("m1", state(-55, as_of=1), T0 + timedelta(seconds=4))  # decided before it
    assert book.decide("m1", T0 + timedelta(seconds=6)).rule == "hold"
    book.apply("m1", state(-60, as_of=2), reconnected + timedelta(seconds=1))  # after it
    assert book.decide("m1", T0 + timedelta(seconds=7)).action == "disconnect"
    book.close()
