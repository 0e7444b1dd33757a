"""Provider selection in the settlement planner (``hub.ingest.plan`` with
``hub.rating.pricing``), on its own: no database, no broker. A meter priced by a selection
among generation offers settles, per interval, the provider its policy chooses; the entry
records the choice; ``priority`` posts the chosen provider's fee to the platform, exact over
the records with its remainder carried; a change of pricing from a date prices the intervals
on each side by their own step."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.model import MeterCfg, Rec
from hub.ingest.plan import Catalog, MeterInputs, MeterPlan, Post, Quarantine, plan_meter
from hub.rating.pricing import Agreement, Market, MeterPricing, Step
from hub.rating.selection import Use, profile_cost
from hub.rating.state import MeterState
from hub.rating.tariffs import TariffHistory, validate_document
from protocol.messages import UsageRecord
from protocol.tariff import Tariff

GW, METER, CUSTOMER = "gw-s", "m-s", "cust"
HOLD = timedelta(seconds=30)
T0 = datetime(2026, 5, 4, 6, tzinfo=UTC)
STEP = timedelta(minutes=15)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=2)
PLATFORM = "platform:USD"


def tariff(tid: str, provider: str, price: str, **component: Any) -> Tariff:
    doc = {"id": tid, "currency": "USD",
           "components": [{"provider": provider, "per_kwh": price, **component}]}  # fmt: skip
    return validate_document(json.dumps(doc), 1)


def histories(*tariffs: Tariff) -> dict[str, TariffHistory]:
    return {t.id: TariffHistory(t.id, (EPOCH,), (t,)) for t in tariffs}


CHEAP = tariff("t-cheap", "gen-cheap", "0.10")
DEAR = tariff("t-dear", "gen-dear", "0.14")
WIRES = tariff("t-wires", "dist", "0.05")
TIERS = {"gen-cheap": "generation", "gen-dear": "generation", "dist": "distribution"}
ACCOUNTS = {p: f"provider:{p}" for p in TIERS}
CANDIDATES = ("t-cheap", "t-dear", "t-wires")


def catalog(
    policy: str | None,
    *,
    fees: dict[str, Fraction] | None = None,
    slas: Mapping[str, Sequence[Agreement]] | None = None,
    steps: tuple[Step, ...] | None = None,
    tariffs: tuple[Tariff, ...] = (CHEAP, DEAR, WIRES),
) -> Catalog:
    if steps is None:
        steps = (Step(EPOCH, "t-cheap", policy, CANDIDATES),)
    market = Market(TIERS, fees or {}, slas or {})
    return Catalog(histories(*tariffs), ACCOUNTS, {}, {METER: MeterPricing(steps)}, market,
                   PLATFORM)  # fmt: skip


CFG = MeterCfg(METER, GW, CUSTOMER, "t-cheap", None, True, "on", None)


def records(n: int, used: int = 900, at: datetime = T0) -> list[UsageRecord]:
    return [UsageRecord(meter=METER, seq=s, start=at + STEP * (s - 1), end=at + STEP * s,
                        import_start=used * (s - 1), import_end=used * s)
            for s in range(1, n + 1)]  # fmt: skip


def plan(cat: Catalog, recs: list[UsageRecord], state: MeterState | None = None) -> MeterPlan:
    inputs = MeterInputs(CFG, state or MeterState(), [Rec(r, GW, NOW, False) for r in recs])
    return plan_meter(inputs, cat, NOW, HOLD)


def posts(p: MeterPlan) -> list[Post]:
    return [d for d in p.decisions if isinstance(d, Post)]


def credited(p: MeterPlan) -> dict[str, int]:
    out: dict[str, int] = {}
    for post in posts(p):
        for account, amount in post.posting.lines:
            out[account] = out.get(account, 0) + amount
    return out


def test_least_cost_settles_the_cheaper_generation_offer() -> None:
    p = plan(catalog("least_cost"), records(4))
    got = credited(p)
    # 3.6 kWh at 0.10 + 0.05: 36 + 18 cents; the dearer offer gets nothing
    assert got["provider:gen-cheap"] == 36 and got["provider:dist"] == 18
    assert "provider:gen-dear" not in got and got[CUSTOMER] == -54
    meta = posts(p)[0].posting.metadata
    assert meta is not None and meta["tariff"] == "selection"
    assert meta["selection"] == {
        "policy": "least_cost",
        "providers": {"distribution": "dist", "generation": "gen-cheap"},
        "by": {"distribution": "cost", "generation": "cost"},
        "tariffs": {"dist": "t-wires@1", "gen-cheap": "t-cheap@1"},
    }
    assert p.credit is not None and p.credit.selection == meta["selection"]
    assert {c.provider for c in p.credit.tariff.components} == {"gen-cheap", "dist"}


def test_sla_settles_the_agreed_provider_even_when_dearer() -> None:
    slas = {CUSTOMER: (Agreement("gen-dear", T0 + STEP * 2),)}  # in force from the third
    p = plan(catalog("sla", slas=slas), records(4))
    chosen = [d.posting.metadata["selection"]["providers"]["generation"]  # type: ignore[index]
              for d in posts(p)]  # fmt: skip
    assert chosen == ["gen-cheap", "gen-cheap", "gen-dear", "gen-dear"]  # at their starts
    by = posts(p)[-1].posting.metadata["selection"]["by"]  # type: ignore[index]
    assert by == {"distribution": "cost", "generation": "sla"}
    got = credited(p)
    # 1.8 kWh at 0.10, then 1.8 kWh at 0.14 (25.2 cents: the 0.2 carried), and 3.6 at 0.05
    assert got["provider:gen-cheap"] == 18 and got["provider:gen-dear"] == 25
    assert got["provider:dist"] == 18 and got[CUSTOMER] == -61


def test_an_agreement_with_a_provider_not_offered_is_not_honoured() -> None:
    slas = {CUSTOMER: (Agreement("gen-elsewhere", EPOCH),)}
    p = plan(catalog("sla", slas=slas), records(2))
    assert "provider:gen-cheap" in credited(p)


def test_priority_settles_the_fee_payer_and_posts_its_fee_to_the_platform() -> None:
    # gen-dear pays 0.013 per kWh (1.3 cents, 13/10000 cents per Wh); gen-cheap pays less
    fees = {"gen-dear": Fraction(13, 10_000), "gen-cheap": Fraction(1, 10_000)}
    p = plan(catalog("priority", fees=fees), records(7, used=333))
    got = credited(p)
    assert "provider:gen-cheap" not in got
    energy = 7 * 333
    fee = Fraction(13, 10_000) * energy  # 3.0303 cents over the seven records
    paid = [d.posting.metadata.get("priority_fees", {}).get("gen-dear", 0)  # type: ignore[union-attr]
            for d in posts(p)]  # fmt: skip
    assert sum(paid) == int(fee) == got[PLATFORM]
    assert p.state is not None and p.state.fees == {"gen-dear": fee - int(fee)}
    for post in posts(p):  # every entry balances
        assert sum(a for _, a in post.posting.lines) == 0
    share = Fraction(14, 1000) * energy  # what gen-dear is owed for the energy
    assert got["provider:gen-dear"] == int(share) - int(fee)


def test_the_fee_carry_survives_the_state_and_stays_exact_across_batches() -> None:
    fees = {"gen-dear": Fraction(13, 10_000)}
    cat = catalog("priority", fees=fees)
    recs = records(9, used=333)
    first = plan(cat, recs[:4])
    assert first.state is not None
    state = MeterState.load(first.state.dump())
    second = plan(cat, recs[4:], state)
    total = credited(first).get(PLATFORM, 0) + credited(second).get(PLATFORM, 0)
    assert total == int(Fraction(13, 10_000) * 9 * 333)


def test_priority_fees_without_a_platform_account_are_quarantined() -> None:
    cat = catalog("priority", fees={"gen-dear": Fraction(1, 1000)})
    cat = Catalog(cat.tariffs, cat.providers, {}, cat.pricing, cat.market, None)
    p = plan(cat, records(1))
    assert [type(d) for d in p.decisions] == [Quarantine]


def test_a_pricing_change_prices_the_intervals_before_and_after_by_each_step() -> None:
    change = T0 + STEP * 2
    steps = (Step(EPOCH, "t-cheap"), Step(change, "t-dear"))
    p = plan(catalog(None, steps=steps), records(4))
    tariffs = [d.posting.metadata["tariff"] for d in posts(p)]  # type: ignore[index]
    assert tariffs == ["t-cheap", "t-cheap", "t-dear", "t-dear"]
    got = credited(p)
    assert got["provider:gen-cheap"] == 18 and got["provider:gen-dear"] == 25  # 25.2


def test_a_provider_offering_in_two_candidates_is_quarantined_with_the_reason() -> None:
    twice = tariff("t-twice", "gen-cheap", "0.09")
    steps = (Step(EPOCH, "t-cheap", "least_cost", ("t-cheap", "t-twice")),)
    p = plan(catalog(None, steps=steps, tariffs=(CHEAP, twice)), records(1))
    [q] = [d for d in p.decisions if isinstance(d, Quarantine)]
    assert "offers in tariffs" in q.reason


PRICES = st.decimals(min_value="0.01", max_value="0.50", places=3)
TOU = st.one_of(st.none(), st.tuples(st.integers(0, 23), PRICES))


def tou_tariff(tid: str, provider: str, price: Any, window: tuple[int, Any] | None) -> Tariff:
    extra: dict[str, Any] = {}
    if window is not None:
        hour, peak = window
        extra["tou"] = [{"start": f"{hour:02d}:00", "end": f"{(hour + 3) % 24:02d}:00",
                         "price": str(peak)}]  # fmt: skip
    return tariff(tid, provider, str(price), **extra)


@settings(max_examples=60, deadline=None)
@given(
    offers=st.lists(st.tuples(PRICES, TOU), min_size=2, max_size=4),
    wires=st.tuples(PRICES, TOU),
    energy=st.lists(st.integers(1, 5000), min_size=1, max_size=6),
    hour=st.integers(0, 23),
)
def test_least_cost_chooses_the_minimum_total_for_every_interval(
    offers: list[tuple[Any, Any]], wires: tuple[Any, Any], energy: list[int], hour: int
) -> None:
    gens = [tou_tariff(f"t-g{i}", f"g{i}", p, w) for i, (p, w) in enumerate(offers)]
    dist = tou_tariff("t-d", "d", *wires)
    tiers = {f"g{i}": "generation" for i in range(len(gens))} | {"d": "distribution"}
    market = Market(tiers, {}, {})
    steps = (Step(EPOCH, "t-g0", "least_cost", tuple(t.id for t in [*gens, dist])),)
    cat = Catalog(histories(*gens, dist), {p: f"provider:{p}" for p in tiers}, {},
                  {METER: MeterPricing(steps)}, market, PLATFORM)  # fmt: skip
    at = T0.replace(hour=hour)
    used = [sum(energy[:i]) for i in range(len(energy) + 1)]
    recs = [UsageRecord(meter=METER, seq=s + 1, start=at + STEP * s, end=at + STEP * (s + 1),
                        import_start=used[s], import_end=used[s + 1])
            for s in range(len(energy))]  # fmt: skip
    p = plan(cat, recs)
    assert len(posts(p)) == len(recs)
    for r, post in zip(recs, posts(p), strict=True):
        chosen = post.posting.metadata["selection"]["providers"]  # type: ignore[index]
        use = [Use(r.start, r.end, r.energy)]
        total = profile_cost(_combined(gens, dist, chosen), use)
        every = [profile_cost(_combined([g], dist, {"generation": g.components[0].provider,
                                                     "distribution": "d"}), use)
                 for g in gens]  # fmt: skip
        assert total == min(every)


def _combined(gens: list[Tariff], dist: Tariff, chosen: dict[str, str]) -> Tariff:
    comps = [c for t in [*gens, dist] for c in t.components if c.provider in chosen.values()]
    return Tariff(id="x", currency="USD", components=tuple(comps))
