"""The pure paper router (hub.billing.routing): the longest prefix of each site prices a postal
code, the lowest per_piece + transport wins, ties go to the lower CO2, full sites are skipped,
and (hypothesis) the choice is never costlier than any eligible candidate and no site's daily
capacity is ever exceeded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.billing.routing import Site, Zone, choose, normalize, route_all, zone_for

NORTH = Site("north", 50, 2, (Zone("N", 40, 30), Zone("N1", 10, 5), Zone("S", 90, 80)))
SOUTH = Site("south", 45, 2, (Zone("S", 10, 6), Zone("N", 30, 40)))


def test_normalize_and_longest_prefix() -> None:
    assert normalize("n1 2-ab") == "N12AB"
    assert zone_for(NORTH, "n1 4xx") == Zone("N1", 10, 5)  # N1 beats N
    assert zone_for(NORTH, "N7 1AA") == Zone("N", 40, 30)
    assert zone_for(SOUTH, "E1 1AA") is None


def test_cheapest_site_wins_and_every_candidate_is_scored() -> None:
    route = choose([SOUTH, NORTH], "N1 2AB", {})
    assert route.choice is not None and route.choice.site == "north"
    assert route.choice.cost == 60 and route.choice.co2_g == 5
    assert [(s.site, s.prefix, s.cost, s.eligible) for s in route.scores] == [
        ("north", "N1", 60, True),
        ("south", "N", 75, True),
    ]
    assert "lowest per_piece + transport (60) of 2 eligible" in route.reason
    south = choose([SOUTH, NORTH], "S3 1AA", {})
    assert south.choice is not None and south.choice.site == "south" and south.choice.cost == 55


def test_a_tie_on_cost_goes_to_the_lower_co2() -> None:
    green = Site("green", 40, 5, (Zone("", 20, 10),))
    grey = Site("grey", 50, 5, (Zone("", 10, 90),))
    route = choose([grey, green], "X1", {})
    assert route.choice is not None and route.choice.site == "green"
    assert "tied on cost with grey: the lower CO2 (10 g)" in route.reason


def test_a_full_site_is_skipped_and_nothing_left_is_reported() -> None:
    route = choose([NORTH, SOUTH], "N1 2AB", {"north": 2})
    assert route.choice is not None and route.choice.site == "south"
    assert [s.why for s in route.scores] == ["full: 2 of 2 used that day", "eligible"]
    none = choose([NORTH, SOUTH], "N1 2AB", {"north": 2, "south": 2})
    assert none.choice is None and "full for the day" in none.reason
    nowhere = choose([NORTH, SOUTH], "E1 1AA", {})
    assert nowhere.choice is None and nowhere.reason == "no print site serves this postal code"
    assert {s.why for s in nowhere.scores} == {"no zone serves the postal code"}


def test_route_all_overflows_in_order() -> None:
    routes = route_all([NORTH, SOUTH], [(i, "N1 2AB") for i in range(5)], {})
    assert [r.choice.site if r.choice else None for _, r in routes] == [
        "north", "north", "south", "south", None,
    ]  # fmt: skip


ALPHABET = "AB1"
codes = st.text(ALPHABET, min_size=1, max_size=4)
zones = st.lists(
    st.builds(Zone, st.text(ALPHABET, max_size=3), st.integers(0, 50), st.integers(0, 20)),
    max_size=4,
    unique_by=lambda z: z.prefix,
)
sites = st.lists(
    st.builds(
        Site, st.sampled_from("abcdef"), st.integers(0, 50), st.integers(0, 4), zones.map(tuple)
    ),
    max_size=5,
    unique_by=lambda s: s.id,
)


@settings(max_examples=300, deadline=None)
@given(sites, codes, st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 5)))
def test_the_choice_is_never_costlier_than_an_eligible_candidate(
    all_sites: list[Site], code: str, used: dict[str, int]
) -> None:
    route = choose(all_sites, code, used)
    assert [s.site for s in route.scores] == sorted(s.id for s in all_sites)
    for site, s in zip(sorted(all_sites, key=lambda s: s.id), route.scores, strict=True):
        matching = [z for z in site.zones if code.startswith(z.prefix)]
        if not matching:
            assert not s.serves
            continue
        best = max(len(z.prefix) for z in matching)
        assert s.cost in {site.per_piece + z.transport for z in matching if len(z.prefix) == best}
    eligible = [s for s in route.scores if s.eligible]
    if route.choice is None:
        assert not eligible
        return
    assert route.choice.eligible
    for other in eligible:
        assert other.cost is not None and route.choice.cost is not None
        assert route.choice.cost <= other.cost
        if other.cost == route.choice.cost:
            assert route.choice.co2_g is not None and other.co2_g is not None
            assert route.choice.co2_g <= other.co2_g


@settings(max_examples=200, deadline=None)
@given(
    sites,
    st.lists(codes, max_size=25),
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 4)),
)
def test_capacity_is_never_exceeded(
    all_sites: list[Site], bills: list[str], used: dict[str, int]
) -> None:
    routes = route_all(all_sites, list(enumerate(bills)), used)
    taken: dict[str, int] = {}
    for _, route in routes:
        if route.choice is not None:
            taken[route.choice.site] = taken.get(route.choice.site, 0) + 1
    for site in all_sites:
        before = used.get(site.id, 0)
        assert taken.get(site.id, 0) <= max(0, site.daily_capacity - before)
    for (_, route), code in zip(routes, bills, strict=True):
        if route.choice is None:  # unroutable: every site serving the code was full by then
            assert all(s.used >= s.capacity for s in route.scores if s.serves)
            assert all(used.get(s.id, 0) + taken.get(s.id, 0) >= s.daily_capacity
                       for s in all_sites if zone_for(s, code) is not None)  # fmt: skip
