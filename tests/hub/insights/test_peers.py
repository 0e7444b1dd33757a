"""The comparison with similar customers on a synthetic population (issue 19): the median and
the efficient quartile of each group, computed here by sorting."""

from __future__ import annotations

import random

from hub.insights.peers import MIN_GROUP, compare_all


def test_groups_medians_and_efficient_quartiles_match_the_population() -> None:
    rnd = random.Random(19)
    values, keys = {}, {}
    for i in range(301):  # three groups: service class and tariff
        key = [("house", "t1"), ("flat", "t1"), ("house", "tou")][i % 3]
        values[f"c{i}"] = rnd.randint(2_000, 20_000) * (2 if key[0] == "house" else 1)
        keys[f"c{i}"] = key
    found = compare_all(values, keys)
    for key in set(keys.values()):
        members = sorted(values[c] for c in keys if keys[c] == key)
        n = len(members)
        median = (members[(n - 1) // 2] + members[n // 2]) / 2
        # the 25th percentile, linear between the two nearest ranks (inclusive method)
        rank = (n - 1) / 4
        low = members[int(rank)]
        efficient = low + (members[int(rank) + 1] - low) * (rank - int(rank))
        for c in (c for c in keys if keys[c] == key):
            assert found[c].median == median and found[c].group == n
            assert abs(found[c].efficient - efficient) < 1e-9
            assert (found[c].position == "efficient") == (values[c] <= efficient)
            assert (found[c].position == "above_median") == (values[c] > median)


def test_a_group_too_small_is_not_compared() -> None:
    values = {f"c{i}": 1000 + i for i in range(MIN_GROUP - 1)}
    assert compare_all(values, dict.fromkeys(values, "g")) == {}
